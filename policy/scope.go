package policy

import "slices"

// relation is one entry of a FROM clause as the query sees it.
type relation struct {
	alias string
	cols  []Output
	// opaque relations (function results) have columns sluice does not
	// know by name: any column of theirs derives from their sources.
	// spread: nor how many (one Output stands for them, Output.Spread).
	opaque  bool
	spread  bool
	sources []Column
	// table is set for a catalog table whose columns sluice does not know
	// (no catalog): a column named x of it is taken to be table.x.
	table *Object
	// obj is the catalog relation behind the entry (nil for subqueries,
	// CTEs and functions): row-locking clauses lock it.
	obj *Object
	// hidden are columns a JOIN … USING merged: an unqualified name or *
	// means the merged column, which a relation of its own holds.
	hidden map[string]bool
}

// scope is one query level: its FROM entries and the CTEs it declares.
type scope struct {
	parent *scope
	rels   []relation
	ctes   map[string][]Output
}

func (s *scope) cte(name string) ([]Output, bool) {
	for ; s != nil; s = s.parent {
		if cols, ok := s.ctes[name]; ok {
			return cols, true
		}
	}
	return nil, false
}

func sourcesOf(outs []Output) []Column {
	var out []Column
	for _, o := range outs {
		for _, c := range o.Sources {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

func union(a []Column, b ...Column) []Column {
	for _, c := range b {
		if !slices.Contains(a, c) {
			a = append(a, c)
		}
	}
	return a
}

// defineCTE registers a CTE in sc: a recursive one is seeded with its
// non-recursive term, then its body is analyzed until its lineage is stable
// (the body reads the CTE itself); aliases rename its columns.
func (sc *scope) defineCTE(name string, aliases []string, recursive bool, seed, body func() ([]Output, error)) error {
	if sc.ctes == nil {
		sc.ctes = map[string][]Output{}
	}
	rename := func(outs []Output) []Output {
		for j := range outs {
			if j < len(aliases) {
				outs[j].Name = aliases[j]
			}
		}
		return outs
	}
	sc.ctes[name] = nil
	if seed != nil {
		outs, err := seed()
		if err != nil {
			return err
		}
		sc.ctes[name] = rename(outs)
	}
	for i := 0; i < 10; i++ {
		outs, err := body()
		if err != nil {
			return err
		}
		outs = rename(outs)
		prev := sc.ctes[name]
		if len(prev) == len(outs) {
			for j := range outs {
				outs[j] = mergeParts(outs[j], prev[j])
			}
		}
		sc.ctes[name] = outs
		if !recursive || equalLineage(prev, outs) {
			return nil
		}
	}
	// Not stable yet (each iteration follows the values one step, so a
	// longer cycle of columns takes more): any column may hold what any
	// holds.
	outs := sc.ctes[name]
	all := sourcesOf(outs)
	for j := range outs {
		outs[j] = Output{Name: outs[j].Name, Sources: slices.Clone(all), Spread: outs[j].Spread}
	}
	return nil
}

// equalLineage reports lineage that another iteration did not change:
// the same sources, bareness and structure, part by part (merging only
// grows them, so counts tell).
func equalLineage(a, b []Output) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i].Sources) != len(b[i].Sources) || a[i].Bare != b[i].Bare || a[i].Shape != b[i].Shape ||
			len(a[i].Steer) != len(b[i].Steer) || !equalLineage(a[i].Parts, b[i].Parts) {
			return false
		}
	}
	return true
}

// bareUnion says whether a column whose values come from both a and b (a
// set operation's branches, a recursive CTE's iterations) is still a bare
// column value: each side is, or contributes no column values at all.
func bareUnion(a, b Output) bool {
	return (a.Bare || len(a.Sources) == 0) && (b.Bare || len(b.Sources) == 0) && len(a.Sources)+len(b.Sources) > 0
}
