package policy

import (
	"maps"
	"slices"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// visibleCols are a relation's columns but those a JOIN … USING merged
// (a function result's columns sluice cannot count stay: the rest of them
// follow the merged one).
func (a *pgAnalyzer) visibleCols(r relation) []Output {
	cols := a.relCols(r)
	if len(r.hidden) == 0 {
		return cols
	}
	return slices.DeleteFunc(cols, func(c Output) bool { return r.hidden[c.Name] && !c.Spread })
}

// joinUsing merges the USING columns of a join whose left side is
// sc.rels[start:mid] and right side sc.rels[mid:]: each name must be one
// column on each side; the merged column (both sides' sources) comes
// first, as PostgreSQL puts it, and the sides' own are then reachable only
// qualified.
func (a *pgAnalyzer) joinUsing(j *pg.JoinExpr, sc *scope, start, mid int) error {
	var names []string
	for _, u := range j.UsingClause {
		names = append(names, u.GetString_().GetSval())
	}
	if j.IsNatural {
		var known bool
		names, known = commonColumns(a.visibleCols, sc.rels[start:mid], sc.rels[mid:])
		if !known {
			// The server merges common columns sluice cannot name, and
			// puts them first: the join's columns are at positions sluice
			// does not know.
			spreadFrom(sc.rels[start:])
		}
	}
	var merged []Output
names:
	for _, name := range names {
		var sides [2]Output
		for i, rels := range [][]relation{sc.rels[start:mid], sc.rels[mid:]} {
			n := 0
			var opaque []Column
			hasOpaque := false
			for _, r := range rels {
				if r.table != nil {
					n = -1 // columns sluice cannot name: resolve as before
					break
				}
				if r.opaque {
					// A function result's columns are not known by name:
					// if the side has no column of the name, the server
					// found it there (or the statement fails).
					opaque, hasOpaque = union(opaque, r.sources...), true
					continue
				}
				for _, c := range a.visibleCols(r) {
					if c.Name == name {
						sides[i] = c
						n++
					}
				}
			}
			if n == 0 && hasOpaque {
				sides[i], n = Output{Name: name, Sources: opaque}, 1
			}
			if n != 1 {
				src, err := a.columnSources([]string{name}, sc)
				if err != nil {
					return err
				}
				a.use(src...)
				continue names
			}
		}
		m := Output{Name: name, Sources: union(slices.Clone(sides[0].Sources), sides[1].Sources...)}
		// An inner or one-sided join's merged value is one side's value;
		// a FULL join's is COALESCE of both.
		m.Bare = j.Jointype != pg.JoinType_JOIN_FULL && sides[0].Bare && sides[1].Bare && len(sides[0].Sources) == 1 && slices.Equal(sides[0].Sources, sides[1].Sources)
		a.use(m.Sources...)
		merged = append(merged, m)
	}
	for i := start; i < len(sc.rels); i++ {
		h := maps.Clone(sc.rels[i].hidden)
		if h == nil {
			h = map[string]bool{}
		}
		for _, m := range merged {
			h[m.Name] = true
		}
		sc.rels[i].hidden = h
	}
	sc.rels = slices.Insert(sc.rels, start, relation{cols: merged})
	return nil
}

// spreadFrom marks the first column of rels uncertain in position, and so
// every one after it (Output.Spread).
func spreadFrom(rels []relation) {
	for i := range rels {
		r := &rels[i]
		if r.opaque {
			r.spread = true
			return
		}
		for k, c := range r.cols {
			if !r.hidden[c.Name] {
				r.cols = slices.Clone(r.cols)
				r.cols[k].Spread = true
				return
			}
		}
	}
}

// commonColumns are the column names both sides of a NATURAL JOIN have, in
// the left side's order; known is false when a side has columns sluice
// cannot name.
func commonColumns(cols func(relation) []Output, left, right []relation) (names []string, known bool) {
	has := func(rels []relation) (map[string]bool, []string, bool) {
		m := map[string]bool{}
		var order []string
		for _, r := range rels {
			if r.opaque || r.table != nil {
				return nil, nil, false
			}
			for _, c := range cols(r) {
				if !m[c.Name] {
					m[c.Name] = true
					order = append(order, c.Name)
				}
			}
		}
		return m, order, true
	}
	_, order, ok1 := has(left)
	rm, _, ok2 := has(right)
	if !ok1 || !ok2 {
		return nil, false
	}
	for _, n := range order {
		if rm[n] {
			names = append(names, n)
		}
	}
	return names, true
}
