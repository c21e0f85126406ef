package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

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
				left[i] = mergeParts(left[i], right[i])
			}
		}
		if err := a.usesByOutput(sc, left, nodesOfSort(sel.SortClause)...); err != nil {
			return nil, err
		}
		if err := a.uses(sc, sel.LimitCount, sel.LimitOffset); err != nil {
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
					outs = append(outs, Output{Name: fmt.Sprintf("column%d", i+1), Bare: true})
				}
				o := Output{Sources: src, Bare: a.bare(e, sc)}
				outs[i].Bare = bareUnion(outs[i], o)
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
	if err := a.locking(sel.LockingClause, sc); err != nil {
		return nil, err
	}
	// What steers the query: filters, limits computed from data, window
	// partitions — and what may also name an output.
	steer := []*pg.Node{sel.WhereClause, sel.HavingClause, sel.LimitCount, sel.LimitOffset}
	steer = append(steer, windowNodes(sel.WindowClause)...)
	if err := a.uses(sc, steer...); err != nil {
		return nil, err
	}
	byOutput := append(slices.Clone(sel.GroupClause), sel.DistinctClause...)
	byOutput = append(byOutput, nodesOfSort(sel.SortClause)...)
	if err := a.usesByOutput(sc, outs, byOutput...); err != nil {
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
			return err
		}
		a.use(src...)
	}
	return nil
}

// usesByOutput records ORDER BY, GROUP BY and DISTINCT ON expressions,
// which may also name an output column or give its position: those steer
// the query with their output's sources. A name that is both an output
// and an input column counts as both.
func (a *pgAnalyzer) usesByOutput(sc *scope, outs []Output, nodes ...*pg.Node) error {
	for _, n := range nodes {
		if n == nil {
			continue
		}
		if c := n.GetAConst(); c != nil && c.GetIval() != nil {
			if pos := int(c.GetIval().Ival); pos >= 1 && pos <= len(outs) {
				a.use(outs[pos-1].Sources...)
			}
			continue
		}
		named := false
		if cr := n.GetColumnRef(); cr != nil && len(cr.Fields) == 1 && !isStar(cr) {
			name := cr.Fields[0].GetString_().GetSval()
			for _, o := range outs {
				if o.Name == name {
					a.use(o.Sources...)
					named = true
				}
			}
		}
		src, err := a.expr(n, sc)
		if err != nil {
			var unknown *unknownColumnError
			if named && asUnknown(err, &unknown) {
				continue
			}
			return err
		}
		a.use(src...)
	}
	return nil
}

// windowNodes are the expressions of named WINDOW definitions.
func windowNodes(defs []*pg.Node) []*pg.Node {
	var out []*pg.Node
	for _, d := range defs {
		if w := d.GetWindowDef(); w != nil {
			out = append(out, w.PartitionClause...)
			out = append(out, nodesOfSort(w.OrderClause)...)
			out = append(out, w.StartOffset, w.EndOffset)
		}
	}
	return out
}

// outputName is the column name PostgreSQL gives a target (FigureColname).
func outputName(rt *pg.ResTarget) string {
	if rt.Name != "" {
		return rt.Name
	}
	return exprName(rt.Val)
}

func exprName(n *pg.Node) string {
	if name, strength := figureColname(n); strength > 0 {
		return name
	}
	return "?column?"
}

// figureColname is PostgreSQL's FigureColnameInternal: the name and its
// strength (0 none, 1 second-best, 2 good). The names must be the
// server's: they are a record's field names, so the keys row_to_json
// makes of a subquery's row, and a key named otherwise would take another
// key's mask.
func figureColname(n *pg.Node) (string, int) {
	if n == nil {
		return "", 0
	}
	switch v := n.Node.(type) {
	case *pg.Node_ColumnRef:
		name := ""
		for _, f := range v.ColumnRef.Fields {
			if s := f.GetString_(); s != nil {
				name = s.Sval
			}
		}
		if name != "" {
			return name, 2
		}
	case *pg.Node_AIndirection:
		name := ""
		for _, f := range v.AIndirection.Indirection {
			if s := f.GetString_(); s != nil {
				name = s.Sval
			}
		}
		if name != "" {
			return name, 2
		}
		return figureColname(v.AIndirection.Arg)
	case *pg.Node_FuncCall:
		if f := v.FuncCall.Funcname; len(f) > 0 {
			return f[len(f)-1].GetString_().GetSval(), 2
		}
	case *pg.Node_AExpr:
		if v.AExpr.Kind == pg.A_Expr_Kind_AEXPR_NULLIF {
			return "nullif", 2
		}
	case *pg.Node_TypeCast:
		name, strength := figureColname(v.TypeCast.Arg)
		if strength <= 1 {
			if names := v.TypeCast.TypeName.GetNames(); len(names) > 0 {
				return names[len(names)-1].GetString_().GetSval(), 1
			}
		}
		return name, strength
	case *pg.Node_CollateClause:
		return figureColname(v.CollateClause.Arg)
	case *pg.Node_GroupingFunc:
		return "grouping", 2
	case *pg.Node_MergeSupportFunc:
		return "merge_action", 2
	case *pg.Node_SubLink:
		switch v.SubLink.SubLinkType {
		case pg.SubLinkType_EXISTS_SUBLINK:
			return "exists", 2
		case pg.SubLinkType_ARRAY_SUBLINK:
			return "array", 2
		case pg.SubLinkType_EXPR_SUBLINK:
			// The subquery's first output's name (a set operation's is
			// its first branch's).
			sel := v.SubLink.Subselect.GetSelectStmt()
			for sel != nil && sel.Larg != nil {
				sel = sel.Larg
			}
			if sel == nil {
				break
			}
			if len(sel.ValuesLists) > 0 {
				return "column1", 2
			}
			if len(sel.TargetList) > 0 {
				if rt := sel.TargetList[0].GetResTarget(); rt != nil {
					return outputName(rt), 2
				}
			}
		}
	case *pg.Node_CaseExpr:
		name, strength := figureColname(v.CaseExpr.Defresult)
		if strength <= 1 {
			return "case", 1
		}
		return name, strength
	case *pg.Node_AArrayExpr:
		return "array", 2
	case *pg.Node_RowExpr:
		return "row", 2
	case *pg.Node_CoalesceExpr:
		return "coalesce", 2
	case *pg.Node_MinMaxExpr:
		switch v.MinMaxExpr.Op {
		case pg.MinMaxOp_IS_GREATEST:
			return "greatest", 2
		case pg.MinMaxOp_IS_LEAST:
			return "least", 2
		}
	case *pg.Node_SqlvalueFunction:
		if name, ok := sqlValueFunctionNames[v.SqlvalueFunction.Op]; ok {
			return name, 2
		}
	case *pg.Node_XmlExpr:
		if name, ok := xmlExprNames[v.XmlExpr.Op]; ok {
			return name, 2
		}
	case *pg.Node_XmlSerialize:
		return "xmlserialize", 2
	case *pg.Node_JsonParseExpr:
		return "json", 2
	case *pg.Node_JsonScalarExpr:
		return "json_scalar", 2
	case *pg.Node_JsonSerializeExpr:
		return "json_serialize", 2
	case *pg.Node_JsonObjectConstructor:
		return "json_object", 2
	case *pg.Node_JsonArrayConstructor, *pg.Node_JsonArrayQueryConstructor:
		return "json_array", 2
	case *pg.Node_JsonObjectAgg:
		return "json_objectagg", 2
	case *pg.Node_JsonArrayAgg:
		return "json_arrayagg", 2
	case *pg.Node_JsonFuncExpr:
		switch v.JsonFuncExpr.Op {
		case pg.JsonExprOp_JSON_EXISTS_OP:
			return "json_exists", 2
		case pg.JsonExprOp_JSON_QUERY_OP:
			return "json_query", 2
		case pg.JsonExprOp_JSON_VALUE_OP:
			return "json_value", 2
		}
	}
	return "", 0
}

var sqlValueFunctionNames = map[pg.SQLValueFunctionOp]string{
	pg.SQLValueFunctionOp_SVFOP_CURRENT_DATE: "current_date",
	pg.SQLValueFunctionOp_SVFOP_CURRENT_TIME: "current_time", pg.SQLValueFunctionOp_SVFOP_CURRENT_TIME_N: "current_time",
	pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP: "current_timestamp", pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP_N: "current_timestamp",
	pg.SQLValueFunctionOp_SVFOP_LOCALTIME: "localtime", pg.SQLValueFunctionOp_SVFOP_LOCALTIME_N: "localtime",
	pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP: "localtimestamp", pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP_N: "localtimestamp",
	pg.SQLValueFunctionOp_SVFOP_CURRENT_ROLE: "current_role", pg.SQLValueFunctionOp_SVFOP_CURRENT_USER: "current_user",
	pg.SQLValueFunctionOp_SVFOP_USER: "user", pg.SQLValueFunctionOp_SVFOP_SESSION_USER: "session_user",
	pg.SQLValueFunctionOp_SVFOP_CURRENT_CATALOG: "current_catalog", pg.SQLValueFunctionOp_SVFOP_CURRENT_SCHEMA: "current_schema",
}

var xmlExprNames = map[pg.XmlExprOp]string{
	pg.XmlExprOp_IS_XMLCONCAT: "xmlconcat", pg.XmlExprOp_IS_XMLELEMENT: "xmlelement", pg.XmlExprOp_IS_XMLFOREST: "xmlforest",
	pg.XmlExprOp_IS_XMLPARSE: "xmlparse", pg.XmlExprOp_IS_XMLPI: "xmlpi", pg.XmlExprOp_IS_XMLROOT: "xmlroot",
	pg.XmlExprOp_IS_XMLSERIALIZE: "xmlserialize",
}

func isStar(cr *pg.ColumnRef) bool {
	return len(cr.Fields) > 0 && cr.Fields[len(cr.Fields)-1].GetAStar() != nil
}

// star expands * or rel.* into the columns it stands for.
func (a *pgAnalyzer) star(cr *pg.ColumnRef, sc *scope) ([]Output, error) {
	if len(cr.Fields) == 1 {
		var out []Output
		for _, r := range sc.rels {
			out = append(out, a.visibleCols(r)...)
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
		return []Output{{Name: r.alias, Sources: r.sources, Spread: r.spread}}
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
		start := len(sc.rels)
		if err := a.fromItem(f.JoinExpr.Larg, sc); err != nil {
			return err
		}
		mid := len(sc.rels)
		if err := a.fromItem(f.JoinExpr.Rarg, sc); err != nil {
			return err
		}
		if err := a.uses(sc, f.JoinExpr.Quals); err != nil {
			return err
		}
		if len(f.JoinExpr.UsingClause) > 0 || f.JoinExpr.IsNatural {
			if err := a.joinUsing(f.JoinExpr, sc, start, mid); err != nil {
				return err
			}
		}
		if al := f.JoinExpr.Alias; al != nil {
			// (a JOIN b) AS j: one relation of both sides' columns; the
			// inner names are no longer visible.
			j := relation{alias: al.Aliasname}
			for _, r := range sc.rels[start:] {
				j.cols = append(j.cols, a.visibleCols(r)...)
			}
			sc.rels = append(sc.rels[:start], relation{alias: j.alias, cols: applyAlias(j.cols, al)})
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
		rf := f.RangeFunction
		alias := rf.Alias.GetAliasname()
		if alias == "" && len(rf.Functions) > 0 {
			if fc := rf.Functions[0].GetList().GetItems(); len(fc) > 0 {
				alias = funcName(fc[0].GetFuncCall())
			}
		}
		// Named columns (an alias's column list, a column definition list)
		// are known; otherwise any name might be one of the function's.
		var names []string
		for _, c := range rf.Alias.GetColnames() {
			names = append(names, c.GetString_().GetSval())
		}
		if len(names) == 0 {
			for _, d := range rf.Coldeflist {
				names = append(names, d.GetColumnDef().GetColname())
			}
		}
		// A function's columns beyond those named may be any number: a
		// composite result has as many as its type, WITH ORDINALITY one
		// more. Only for the functions known to return one column is the
		// count known.
		width := -1
		if len(rf.Functions) == 1 && len(rf.Coldeflist) == 0 {
			if fc := rf.Functions[0].GetList().GetItems(); len(fc) > 0 {
				width = functionWidth(fc[0].GetFuncCall(), a)
			}
		} else if len(rf.Coldeflist) > 0 {
			width = len(rf.Coldeflist)
		}
		if width > 0 && rf.Ordinality {
			width++
		}
		if len(names) == 0 {
			sc.rels = append(sc.rels, relation{alias: alias, opaque: true, sources: src, spread: width != 1})
			break
		}
		r := relation{alias: alias}
		for _, n := range names {
			r.cols = append(r.cols, Output{Name: n, Sources: src})
		}
		r.cols[len(r.cols)-1].Spread = width != len(names)
		sc.rels = append(sc.rels, r)
	default:
		return fmt.Errorf("sluice does not understand a %T in FROM", n.Node)
	}
	return nil
}

// functionWidths are the numbers of columns of set-returning builtins.
var functionWidths = map[string]int{
	"generate_series": 1, "generate_subscripts": 1, "regexp_matches": 1, "regexp_split_to_table": 1,
	"string_to_table": 1, "json_array_elements": 1, "json_array_elements_text": 1, "jsonb_array_elements": 1,
	"jsonb_array_elements_text": 1, "json_object_keys": 1, "jsonb_object_keys": 1, "jsonb_path_query": 1,
	"json_each": 2, "json_each_text": 2, "jsonb_each": 2, "jsonb_each_text": 2,
}

// functionWidth is the number of columns of a call in FROM (-1: not
// known): a builtin's of functionWidths, or unnest's of one array.
func functionWidth(fc *pg.FuncCall, a *pgAnalyzer) int {
	if fc == nil || fc.FuncVariadic || (len(fc.Funcname) > 1 && fc.Funcname[0].GetString_().GetSval() != "pg_catalog") {
		return -1
	}
	name := funcName(fc)
	if len(fc.Funcname) == 1 && a.userFunction(name) {
		return -1
	}
	if name == "unnest" && len(fc.Args) == 1 {
		return 1
	}
	if w, ok := functionWidths[name]; ok {
		return w
	}
	return -1
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
	r := relation{alias: alias, obj: &obj}
	if a.cat == nil {
		r.table = &obj
	} else {
		if r.cols, err = a.relationColumns(obj); err != nil {
			return err
		}
		r.cols = applyAlias(r.cols, rv.Alias)
	}
	sc.rels = append(sc.rels, r)
	return nil
}

// relationColumns are a catalog relation's columns; a view's also derive
// from what its definition reads.
func (a *pgAnalyzer) relationColumns(obj Object) ([]Output, error) {
	names, _ := a.cat.Columns(obj.Schema, obj.Name)
	cols := make([]Output, 0, len(names))
	for _, c := range names {
		cols = append(cols, Output{Name: c, Sources: []Column{{Schema: obj.Schema, Table: obj.Name, Name: c}}, Bare: true})
	}
	cols = sessionLineage(a.cat, obj, cols)
	def, ok := viewDefinition(a.cat, obj)
	if !ok {
		return cols, nil
	}
	outs, err := a.viewOutputs(obj, def)
	if err != nil {
		return nil, err
	}
	return throughView(obj, cols, outs), nil
}

// viewOutputs traces a view's definition (as pg_get_viewdef prints it,
// every name qualified). Its relations are read with the view owner's
// rights, so they make no requests of the agent; their columns' tags
// still reach the view's columns.
func (a *pgAnalyzer) viewOutputs(view Object, def string) ([]Output, error) {
	if a.views[view] {
		return nil, fmt.Errorf("view %s.%s is defined through itself", view.Schema, view.Name)
	}
	if len(a.views) >= maxViewDepth {
		return nil, fmt.Errorf("views nest deeper than %d levels at %s.%s", maxViewDepth, view.Schema, view.Name)
	}
	tree, err := pg.Parse(def)
	if err != nil || len(tree.Stmts) != 1 {
		return nil, fmt.Errorf("cannot trace view %s.%s: its definition does not parse: %v", view.Schema, view.Name, err)
	}
	inner := &pgAnalyzer{cat: a.cat, assigned: map[*pg.RangeVar]bool{}, work: a.work, views: maps.Clone(a.views)}
	if inner.views == nil {
		inner.views = map[Object]bool{}
	}
	inner.views[view] = true
	outs, err := inner.query(tree.Stmts[0].Stmt, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot trace view %s.%s: %w", view.Schema, view.Name, err)
	}
	return outs, nil
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

// columnSources resolves a column reference to the columns it reads.
func (a *pgAnalyzer) columnSources(fields []string, sc *scope) ([]Column, error) {
	o, err := a.columnRef(fields, sc)
	return o.Sources, err
}

// columnRef resolves a column reference (name, rel.name, schema.rel.name,
// or a bare relation name: a whole-row reference) through the scopes, as
// PostgreSQL does: a level's named columns before outer levels. A function
// result whose columns sluice cannot name might hold any name: it is a
// candidate, and so are the outer levels' columns of that name — both are
// taken, since sluice cannot tell which the server picks.
func (a *pgAnalyzer) columnRef(fields []string, sc *scope) (Output, error) {
	col := fields[len(fields)-1]
	var maybe Output // candidates from unnamed function results
	candidates := false
	for s := sc; s != nil; s = s.parent {
		if len(fields) == 1 {
			var found Output
			n := 0
			for _, r := range s.rels {
				if r.opaque || r.table != nil {
					continue
				}
				for _, c := range r.cols {
					if c.Name == col && !r.hidden[col] {
						found = c
						n++
					}
				}
			}
			if n > 1 {
				return Output{}, fmt.Errorf("column reference %q is ambiguous", col)
			}
			if n == 1 {
				return withCandidates(found, maybe, candidates), nil
			}
			// Columns of function results, and of tables when there is no
			// catalog, are not known by name: every one is a candidate.
			for _, r := range s.rels {
				if r.opaque {
					maybe.Sources = union(maybe.Sources, r.sources...)
					candidates = true
				} else if r.table != nil {
					maybe.Sources = union(maybe.Sources, Column{Schema: r.table.Schema, Table: r.table.Name, Name: col})
					candidates = true
				}
			}
			continue
		}
		relName := fields[len(fields)-2]
		for _, r := range s.rels {
			if r.alias != relName {
				continue
			}
			if r.opaque {
				return Output{Name: col, Sources: r.sources}, nil
			}
			if r.table != nil {
				return Output{Name: col, Sources: []Column{{Schema: r.table.Schema, Table: r.table.Name, Name: col}}, Bare: true}, nil
			}
			for _, c := range r.cols {
				if c.Name == col {
					return c, nil
				}
			}
			return Output{}, &unknownColumnError{strings.Join(fields, ".")}
		}
	}
	if len(fields) == 1 {
		// A whole-row reference such as row_to_json(u): PostgreSQL takes a
		// bare name for a relation only when no level has a column of that
		// name (an outer query's column wins over an inner relation).
		if r, ok := findRel(sc, col); ok {
			return withCandidates(Output{Name: col, Sources: sourcesOf(a.relCols(r))}, maybe, candidates), nil
		}
	}
	if candidates {
		maybe.Name = col
		return maybe, nil
	}
	return Output{}, &unknownColumnError{strings.Join(fields, ".")}
}

// withCandidates adds inner function results' sources to a name resolved
// further out.
func withCandidates(o Output, maybe Output, candidates bool) Output {
	if !candidates {
		return o
	}
	o.Sources = union(slices.Clone(o.Sources), maybe.Sources...)
	o.Bare = false
	return unshaped(o)
}

// bare reports whether an expression's values are a column's values as
// stored: a column reference, possibly cast to an unbounded text type or
// given a collation.
func (a *pgAnalyzer) bare(n *pg.Node, sc *scope) bool {
	switch v := n.Node.(type) {
	case *pg.Node_ColumnRef:
		if isStar(v.ColumnRef) {
			return false
		}
		var fields []string
		for _, f := range v.ColumnRef.Fields {
			fields = append(fields, f.GetString_().GetSval())
		}
		o, err := a.columnRef(fields, sc)
		return err == nil && o.Bare
	case *pg.Node_TypeCast:
		tn := v.TypeCast.TypeName
		names := tn.GetNames()
		if len(names) == 0 || len(tn.GetTypmods()) > 0 || len(tn.GetArrayBounds()) > 0 {
			return false
		}
		switch names[len(names)-1].GetString_().GetSval() {
		case "text", "varchar", "bpchar":
			return a.bare(v.TypeCast.Arg, sc)
		}
	case *pg.Node_CollateClause:
		return a.bare(v.CollateClause.Arg, sc)
	}
	return false
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
		o := Output{Name: outputName(rt), Sources: src, Bare: a.bare(rt.Val, sc)}
		sh, ok, err := a.shape(rt.Val, sc)
		if err != nil {
			return nil, err
		}
		if ok {
			o = withShape(o, sh)
		}
		outs = append(outs, o)
	}
	return outs, nil
}
