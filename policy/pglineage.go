package policy

import (
	"fmt"
	"slices"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// relation is one entry of a FROM clause as the query sees it.
type relation struct {
	alias string
	cols  []Output
	// opaque relations (function results) have columns sluice does not
	// know by name: any column of theirs derives from their sources.
	opaque  bool
	sources []Column
	// table is set for a catalog table whose columns sluice does not know
	// (no catalog): a column named x of it is taken to be table.x.
	table *Object
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

// with registers a WITH clause's CTEs in sc, analyzing each query (which
// may be a data-modifying statement) in order.
func (a *pgAnalyzer) with(w *pg.WithClause, sc *scope) error {
	if w == nil {
		return nil
	}
	for _, n := range w.Ctes {
		cte := n.GetCommonTableExpr()
		if cte == nil {
			continue
		}
		var aliases []string
		for _, c := range cte.Aliascolnames {
			aliases = append(aliases, c.GetString_().GetSval())
		}
		var seed func() ([]Output, error)
		if sel := cte.Ctequery.GetSelectStmt(); w.Recursive && sel != nil && sel.Larg != nil {
			seed = func() ([]Output, error) { return a.selectStmt(sel.Larg, sc) }
		}
		if err := sc.defineCTE(cte.Ctename, aliases, w.Recursive, seed, func() ([]Output, error) {
			return a.query(cte.Ctequery, sc)
		}); err != nil {
			return err
		}
	}
	return nil
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
				outs[j].Sources = union(outs[j].Sources, prev[j].Sources...)
			}
		}
		sc.ctes[name] = outs
		if !recursive || equalLineage(prev, outs) {
			return nil
		}
	}
	return nil
}

func equalLineage(a, b []Output) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i].Sources) != len(b[i].Sources) {
			return false
		}
	}
	return true
}

// query analyzes any statement that can stand in a CTE or subquery.
func (a *pgAnalyzer) query(n *pg.Node, parent *scope) ([]Output, error) {
	if *a.work++; *a.work > maxWork {
		return nil, errTooComplex
	}
	switch q := n.Node.(type) {
	case *pg.Node_SelectStmt:
		return a.selectStmt(q.SelectStmt, parent)
	case *pg.Node_InsertStmt:
		return a.insertIn(q.InsertStmt, parent)
	case *pg.Node_UpdateStmt:
		return a.updateIn(q.UpdateStmt, parent)
	case *pg.Node_DeleteStmt:
		return a.deleteIn(q.DeleteStmt, parent)
	}
	return nil, fmt.Errorf("sluice does not understand a %T in a query", n.Node)
}

func (a *pgAnalyzer) selectStmt(sel *pg.SelectStmt, parent *scope) ([]Output, error) {
	if *a.work++; *a.work > maxWork {
		return nil, errTooComplex
	}
	sc := &scope{parent: parent}
	if err := a.with(sel.WithClause, sc); err != nil {
		return nil, err
	}
	if sel.Op != pg.SetOperation_SETOP_NONE && sel.Op != pg.SetOperation_SET_OPERATION_UNDEFINED {
		left, err := a.selectStmt(sel.Larg, sc)
		if err != nil {
			return nil, err
		}
		right, err := a.selectStmt(sel.Rarg, sc)
		if err != nil {
			return nil, err
		}
		for i := range left {
			if i < len(right) {
				left[i].Sources = union(left[i].Sources, right[i].Sources...)
			}
		}
		if err := a.uses(sc, nodesOfSort(sel.SortClause)...); err != nil {
			return nil, err
		}
		return left, nil
	}
	if len(sel.ValuesLists) > 0 {
		var outs []Output
		for _, row := range sel.ValuesLists {
			for i, e := range row.GetList().GetItems() {
				src, err := a.expr(e, sc)
				if err != nil {
					return nil, err
				}
				if i >= len(outs) {
					outs = append(outs, Output{Name: fmt.Sprintf("column%d", i+1)})
				}
				outs[i].Sources = union(outs[i].Sources, src...)
			}
		}
		return outs, nil
	}
	for _, f := range sel.FromClause {
		if err := a.fromItem(f, sc); err != nil {
			return nil, err
		}
	}
	outs, err := a.targetList(sel.TargetList, sc)
	if err != nil {
		return nil, err
	}
	steer := []*pg.Node{sel.WhereClause, sel.HavingClause}
	steer = append(steer, sel.GroupClause...)
	steer = append(steer, sel.DistinctClause...)
	steer = append(steer, nodesOfSort(sel.SortClause)...)
	if err := a.uses(sc, steer...); err != nil {
		return nil, err
	}
	return outs, nil
}

func nodesOfSort(sorts []*pg.Node) []*pg.Node {
	var out []*pg.Node
	for _, s := range sorts {
		if sb := s.GetSortBy(); sb != nil {
			out = append(out, sb.Node)
		} else {
			out = append(out, s)
		}
	}
	return out
}

// uses records the columns in expressions that steer a query.
func (a *pgAnalyzer) uses(sc *scope, nodes ...*pg.Node) error {
	for _, n := range nodes {
		if n == nil {
			continue
		}
		src, err := a.expr(n, sc)
		if err != nil {
			// ORDER BY and GROUP BY may name an output column; those carry
			// the lineage of their output, already accounted for.
			var unknown *unknownColumnError
			if asUnknown(err, &unknown) {
				continue
			}
			return err
		}
		a.use(src...)
	}
	return nil
}

// outputName is the column name PostgreSQL gives a target (FigureColname).
func outputName(rt *pg.ResTarget) string {
	if rt.Name != "" {
		return rt.Name
	}
	return exprName(rt.Val)
}

func exprName(n *pg.Node) string {
	switch v := n.Node.(type) {
	case *pg.Node_ColumnRef:
		f := v.ColumnRef.Fields
		return f[len(f)-1].GetString_().GetSval()
	case *pg.Node_FuncCall:
		return funcName(v.FuncCall)
	case *pg.Node_TypeCast:
		if name := exprName(v.TypeCast.Arg); name != "?column?" {
			return name
		}
		if names := v.TypeCast.TypeName.GetNames(); len(names) > 0 {
			return names[len(names)-1].GetString_().GetSval()
		}
	case *pg.Node_CoalesceExpr:
		return "coalesce"
	case *pg.Node_MinMaxExpr:
		if v.MinMaxExpr.Op == pg.MinMaxOp_IS_GREATEST {
			return "greatest"
		}
		return "least"
	case *pg.Node_CaseExpr:
		return "case"
	case *pg.Node_AArrayExpr:
		return "array"
	case *pg.Node_RowExpr:
		return "row"
	case *pg.Node_SubLink:
		if sel := v.SubLink.Subselect.GetSelectStmt(); sel != nil && v.SubLink.SubLinkType == pg.SubLinkType_EXPR_SUBLINK && len(sel.TargetList) > 0 {
			if rt := sel.TargetList[0].GetResTarget(); rt != nil {
				return outputName(rt)
			}
		}
		if v.SubLink.SubLinkType == pg.SubLinkType_EXISTS_SUBLINK {
			return "exists"
		}
		if v.SubLink.SubLinkType == pg.SubLinkType_ARRAY_SUBLINK {
			return "array"
		}
	}
	return "?column?"
}

func isStar(cr *pg.ColumnRef) bool {
	return len(cr.Fields) > 0 && cr.Fields[len(cr.Fields)-1].GetAStar() != nil
}

// star expands * or rel.* into the columns it stands for.
func (a *pgAnalyzer) star(cr *pg.ColumnRef, sc *scope) ([]Output, error) {
	if len(cr.Fields) == 1 {
		var out []Output
		for _, r := range sc.rels {
			out = append(out, a.relCols(r)...)
		}
		return out, nil
	}
	name := cr.Fields[len(cr.Fields)-2].GetString_().GetSval()
	r, ok := findRel(sc, name)
	if !ok {
		return nil, fmt.Errorf("cannot resolve %s.*", name)
	}
	return a.relCols(r), nil
}

func (a *pgAnalyzer) relCols(r relation) []Output {
	if r.opaque {
		return []Output{{Name: r.alias, Sources: r.sources}}
	}
	if r.table != nil {
		return []Output{{Name: "*", Sources: []Column{{Schema: r.table.Schema, Table: r.table.Name, Name: "*"}}}}
	}
	return slices.Clone(r.cols)
}

func findRel(sc *scope, alias string) (relation, bool) {
	for s := sc; s != nil; s = s.parent {
		for _, r := range s.rels {
			if r.alias == alias {
				return r, true
			}
		}
	}
	return relation{}, false
}

// fromItem adds a FROM entry (table, CTE, subquery, join, function) to sc.
func (a *pgAnalyzer) fromItem(n *pg.Node, sc *scope) error {
	switch f := n.Node.(type) {
	case *pg.Node_RangeVar:
		return a.addRangeVar(sc, f.RangeVar, "select")
	case *pg.Node_RangeSubselect:
		outs, err := a.query(f.RangeSubselect.Subquery, sc)
		if err != nil {
			return err
		}
		sc.rels = append(sc.rels, relation{alias: f.RangeSubselect.Alias.GetAliasname(), cols: applyAlias(outs, f.RangeSubselect.Alias)})
	case *pg.Node_JoinExpr:
		if err := a.fromItem(f.JoinExpr.Larg, sc); err != nil {
			return err
		}
		if err := a.fromItem(f.JoinExpr.Rarg, sc); err != nil {
			return err
		}
		if err := a.uses(sc, f.JoinExpr.Quals); err != nil {
			return err
		}
		for _, u := range f.JoinExpr.UsingClause {
			src, err := a.columnSources([]string{u.GetString_().GetSval()}, sc)
			if err != nil {
				return err
			}
			a.use(src...)
		}
	case *pg.Node_RangeFunction:
		var src []Column
		for _, fn := range f.RangeFunction.Functions {
			s, err := a.expr(fn, sc)
			if err != nil {
				return err
			}
			src = union(src, s...)
		}
		alias := f.RangeFunction.Alias.GetAliasname()
		if alias == "" && len(f.RangeFunction.Functions) > 0 {
			if fc := f.RangeFunction.Functions[0].GetList().GetItems(); len(fc) > 0 {
				alias = funcName(fc[0].GetFuncCall())
			}
		}
		sc.rels = append(sc.rels, relation{alias: alias, opaque: true, sources: src})
	default:
		return fmt.Errorf("sluice does not understand a %T in FROM", n.Node)
	}
	return nil
}

func applyAlias(outs []Output, al *pg.Alias) []Output {
	for i, c := range al.GetColnames() {
		if i < len(outs) {
			outs[i].Name = c.GetString_().GetSval()
		}
	}
	return outs
}

// addRangeVar adds a named relation: a CTE in scope or a catalog table.
func (a *pgAnalyzer) addRangeVar(sc *scope, rv *pg.RangeVar, action string) error {
	alias := rv.Relname
	if rv.Alias != nil {
		alias = rv.Alias.Aliasname
	}
	if rv.Schemaname == "" {
		if cols, ok := sc.cte(rv.Relname); ok {
			a.assigned[rv] = true
			sc.rels = append(sc.rels, relation{alias: alias, cols: applyAlias(slices.Clone(cols), rv.Alias)})
			return nil
		}
	}
	a.assigned[rv] = true
	obj, err := a.table(rv)
	if err != nil {
		return err
	}
	if action != "" {
		a.add(action, obj)
	}
	r := relation{alias: alias}
	if a.cat == nil {
		r.table = &obj
	} else {
		names, _ := a.cat.Columns(obj.Schema, obj.Name)
		for _, c := range names {
			r.cols = append(r.cols, Output{Name: c, Sources: []Column{{Schema: obj.Schema, Table: obj.Name, Name: c}}})
		}
		r.cols = applyAlias(r.cols, rv.Alias)
	}
	sc.rels = append(sc.rels, r)
	return nil
}

type unknownColumnError struct{ name string }

func (e *unknownColumnError) Error() string { return fmt.Sprintf("cannot resolve column %q", e.name) }

func asUnknown(err error, target **unknownColumnError) bool {
	e, ok := err.(*unknownColumnError)
	if ok {
		*target = e
	}
	return ok
}

// columnSources resolves a column reference (name, rel.name, schema.rel.name,
// or a bare relation name: a whole-row reference) through the scopes.
func (a *pgAnalyzer) columnSources(fields []string, sc *scope) ([]Column, error) {
	col := fields[len(fields)-1]
	for s := sc; s != nil; s = s.parent {
		if len(fields) == 1 {
			var found []Column
			n := 0
			for _, r := range s.rels {
				if r.opaque || r.table != nil {
					continue
				}
				for _, c := range r.cols {
					if c.Name == col {
						found = union(found, c.Sources...)
						n++
					}
				}
			}
			if n > 1 {
				return nil, fmt.Errorf("column reference %q is ambiguous", col)
			}
			if n == 1 {
				return found, nil
			}
			// A whole-row reference such as row_to_json(u).
			for _, r := range s.rels {
				if r.alias == col {
					return sourcesOf(a.relCols(r)), nil
				}
			}
			// Columns of function results, and of tables when there is no
			// catalog, are not known by name: take every candidate.
			for _, r := range s.rels {
				if r.opaque {
					found = union(found, r.sources...)
					n++
				} else if r.table != nil {
					found = union(found, Column{Schema: r.table.Schema, Table: r.table.Name, Name: col})
					n++
				}
			}
			if n > 0 {
				return found, nil
			}
			continue
		}
		relName := fields[len(fields)-2]
		for _, r := range s.rels {
			if r.alias != relName {
				continue
			}
			if r.opaque {
				return r.sources, nil
			}
			if r.table != nil {
				return []Column{{Schema: r.table.Schema, Table: r.table.Name, Name: col}}, nil
			}
			for _, c := range r.cols {
				if c.Name == col {
					return c.Sources, nil
				}
			}
			return nil, &unknownColumnError{strings.Join(fields, ".")}
		}
	}
	return nil, &unknownColumnError{strings.Join(fields, ".")}
}

// expr returns the table columns an expression's value derives from. Scalar
// subqueries contribute their outputs; every subquery's own predicates are
// recorded as uses.
func (a *pgAnalyzer) expr(n *pg.Node, sc *scope) ([]Column, error) {
	var out []Column
	var err error
	var walk func(m proto.Message) bool
	walk = func(m proto.Message) bool {
		switch v := m.(type) {
		case *pg.ColumnRef:
			if isStar(v) {
				cols, e := a.star(v, sc)
				if e != nil {
					err = e
					return false
				}
				out = union(out, sourcesOf(cols)...)
				return false
			}
			var fields []string
			for _, f := range v.Fields {
				fields = append(fields, f.GetString_().GetSval())
			}
			src, e := a.columnSources(fields, sc)
			if e != nil {
				err = e
				return false
			}
			out = union(out, src...)
			return false
		case *pg.SubLink:
			if v.Testexpr != nil {
				src, e := a.expr(v.Testexpr, sc)
				if e != nil {
					err = e
					return false
				}
				out = union(out, src...)
			}
			outs, e := a.query(v.Subselect, sc)
			if e != nil {
				err = e
				return false
			}
			if v.SubLinkType == pg.SubLinkType_EXISTS_SUBLINK {
				a.use(sourcesOf(outs)...)
			} else {
				out = union(out, sourcesOf(outs)...)
			}
			return false
		}
		return true
	}
	visitUntil(n.ProtoReflect().Interface(), walk)
	return out, err
}

// visitUntil is visit with pruning: fn returns false to skip a subtree.
func visitUntil(m proto.Message, fn func(proto.Message) bool) {
	r := m.ProtoReflect()
	if !r.IsValid() || !fn(m) {
		return
	}
	r.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind || fd.IsMap() {
			return true
		}
		if fd.IsList() {
			for i := 0; i < v.List().Len(); i++ {
				visitUntil(v.List().Get(i).Message().Interface(), fn)
			}
		} else {
			visitUntil(v.Message().Interface(), fn)
		}
		return true
	})
}

func (a *pgAnalyzer) targetScope(rv *pg.RangeVar, action string, parent *scope) (*scope, error) {
	sc := &scope{parent: parent}
	if err := a.addRangeVar(sc, rv, ""); err != nil {
		return nil, err
	}
	if action == "" {
		return sc, nil
	}
	return sc, a.rel(action, rv)
}

// targetList traces a SELECT list or RETURNING list.
func (a *pgAnalyzer) targetList(list []*pg.Node, sc *scope) ([]Output, error) {
	var outs []Output
	for _, t := range list {
		rt := t.GetResTarget()
		if rt == nil {
			continue
		}
		if cr := rt.Val.GetColumnRef(); cr != nil && isStar(cr) {
			cols, err := a.star(cr, sc)
			if err != nil {
				return nil, err
			}
			outs = append(outs, cols...)
			continue
		}
		src, err := a.expr(rt.Val, sc)
		if err != nil {
			return nil, err
		}
		outs = append(outs, Output{Name: outputName(rt), Sources: src})
	}
	return outs, nil
}

func (a *pgAnalyzer) insertIn(s *pg.InsertStmt, parent *scope) ([]Output, error) {
	sc := &scope{parent: parent}
	if err := a.with(s.WithClause, sc); err != nil {
		return nil, err
	}
	if s.SelectStmt != nil {
		outs, err := a.query(s.SelectStmt, sc)
		if err != nil {
			return nil, err
		}
		a.use(sourcesOf(outs)...) // the values flow into the table
	}
	tsc, err := a.targetScope(s.Relation, "insert", sc)
	if err != nil {
		return nil, err
	}
	if oc := s.OnConflictClause; oc != nil {
		if oc.Action == pg.OnConflictAction_ONCONFLICT_UPDATE {
			a.add("update", mustTable(a, s.Relation))
		}
		if err := a.setList(oc.TargetList, tsc); err != nil {
			return nil, err
		}
		if err := a.uses(tsc, oc.WhereClause); err != nil {
			return nil, err
		}
	}
	return a.targetList(s.ReturningList, tsc)
}

func mustTable(a *pgAnalyzer, rv *pg.RangeVar) Object {
	o, _ := a.table(rv)
	return o
}

// setList records the columns flowing into SET expressions.
func (a *pgAnalyzer) setList(list []*pg.Node, sc *scope) error {
	for _, t := range list {
		if rt := t.GetResTarget(); rt != nil {
			if err := a.uses(sc, rt.Val); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *pgAnalyzer) updateIn(s *pg.UpdateStmt, parent *scope) ([]Output, error) {
	return a.writeIn(parent, s.WithClause, s.Relation, "update", s.FromClause, s.TargetList, s.WhereClause, s.ReturningList)
}

func (a *pgAnalyzer) deleteIn(s *pg.DeleteStmt, parent *scope) ([]Output, error) {
	return a.writeIn(parent, s.WithClause, s.Relation, "delete", s.UsingClause, nil, s.WhereClause, s.ReturningList)
}

// writeIn analyzes UPDATE and DELETE: the relation written, the others read
// (FROM or USING), the SET expressions, WHERE, and RETURNING.
func (a *pgAnalyzer) writeIn(parent *scope, with *pg.WithClause, rel *pg.RangeVar, action string,
	from, set []*pg.Node, where *pg.Node, returning []*pg.Node) ([]Output, error) {
	sc := &scope{parent: parent}
	if err := a.with(with, sc); err != nil {
		return nil, err
	}
	tsc, err := a.targetScope(rel, action, sc)
	if err != nil {
		return nil, err
	}
	for _, f := range from {
		if err := a.fromItem(f, tsc); err != nil {
			return nil, err
		}
	}
	if err := a.setList(set, tsc); err != nil {
		return nil, err
	}
	if err := a.uses(tsc, where); err != nil {
		return nil, err
	}
	a.st.Bounded = where != nil
	return a.targetList(returning, tsc)
}

// merge analyzes MERGE: its WHEN clauses say which writes it makes; the ON
// condition bounds them.
func (a *pgAnalyzer) merge(m *pg.MergeStmt) error {
	sc := &scope{}
	if err := a.with(m.WithClause, sc); err != nil {
		return err
	}
	tsc, err := a.targetScope(m.Relation, "", sc)
	if err != nil {
		return err
	}
	if err := a.fromItem(m.SourceRelation, tsc); err != nil {
		return err
	}
	if err := a.uses(tsc, m.JoinCondition); err != nil {
		return err
	}
	a.st.Bounded = true
	for _, n := range m.MergeWhenClauses {
		w := n.GetMergeWhenClause()
		if w == nil {
			continue
		}
		switch w.CommandType {
		case pg.CmdType_CMD_UPDATE:
			err = a.rel("update", m.Relation)
		case pg.CmdType_CMD_INSERT:
			err = a.rel("insert", m.Relation)
		case pg.CmdType_CMD_DELETE:
			err = a.rel("delete", m.Relation)
		}
		if err != nil {
			return err
		}
		if err := a.uses(tsc, append(append([]*pg.Node{w.Condition}, w.TargetList...), w.Values...)...); err != nil {
			return err
		}
	}
	outs, err := a.targetList(m.ReturningList, tsc)
	a.st.Outputs = outs
	return err
}
