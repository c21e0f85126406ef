package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// shape traces the structure of an expression's value when PostgreSQL
// builds it from parts (JSON from rows or keys, composites, arrays), so
// masking can mask only the parts from protected columns. ok is false for
// a value sluice takes as one whole. Only the builtins are understood: a
// schema other than pg_catalog names a user function.
func (a *pgAnalyzer) shape(n *pg.Node, sc *scope) (Output, bool, error) {
	if n == nil {
		return Output{}, false, nil
	}
	switch v := n.Node.(type) {
	case *pg.Node_ColumnRef:
		if isStar(v.ColumnRef) {
			// row_to_json(u.*): the relation's row.
			if len(v.ColumnRef.Fields) < 2 {
				return Output{}, false, nil
			}
			r, found := findRel(sc, v.ColumnRef.Fields[len(v.ColumnRef.Fields)-2].GetString_().GetSval())
			if !found {
				return Output{}, false, nil
			}
			return a.rowShape(r)
		}
		var fields []string
		for _, f := range v.ColumnRef.Fields {
			fields = append(fields, f.GetString_().GetSval())
		}
		if len(fields) == 1 {
			if r, whole := a.wholeRow(fields[0], sc); whole {
				return a.rowShape(r)
			}
		}
		o, err := a.columnRef(fields, sc)
		if err != nil {
			return Output{}, false, err
		}
		return o, o.Shape != ShapeNone, nil
	case *pg.Node_TypeCast:
		inner, ok, err := a.shape(v.TypeCast.Arg, sc)
		if !ok || err != nil {
			return Output{}, false, err
		}
		tn := v.TypeCast.TypeName
		names := tn.GetNames()
		if len(names) == 0 || len(tn.GetArrayBounds()) > 0 || len(tn.GetTypmods()) > 0 ||
			(len(names) > 1 && names[0].GetString_().GetSval() != "pg_catalog") {
			return Output{}, false, nil // another schema's type of that name
		}
		switch names[len(names)-1].GetString_().GetSval() {
		case "json", "jsonb":
			if inner.Shape.IsJSON() {
				return inner, true, nil
			}
		case "text", "varchar":
			// The text of a JSON, composite or array value is its text form.
			return inner, true, nil
		}
		return Output{}, false, nil
	case *pg.Node_RowExpr:
		var parts []Output
		for _, e := range v.RowExpr.Args {
			if cr := e.GetColumnRef(); cr != nil && isStar(cr) {
				// ROW(t.*) has t's columns as fields of its own.
				cols, ok := a.starFields(cr, sc)
				if !ok {
					return Output{}, false, nil
				}
				parts = append(parts, cols...)
				continue
			}
			if ind := e.GetAIndirection(); ind != nil && slices.ContainsFunc(ind.Indirection, func(n *pg.Node) bool { return n.GetAStar() != nil }) {
				return Output{}, false, nil // ROW((x).*): as many fields as x has
			}
			p, err := a.part(e, sc, "")
			if err != nil {
				return Output{}, false, err
			}
			parts = append(parts, p)
		}
		for i := range parts {
			parts[i].Name = fmt.Sprintf("f%d", i+1)
		}
		if len(v.RowExpr.Colnames) == len(parts) {
			for i, c := range v.RowExpr.Colnames {
				parts[i].Name = c.GetString_().GetSval()
			}
		}
		return shaped("row", ShapeRecord, parts), true, nil
	case *pg.Node_AArrayExpr:
		var parts []Output
		for _, e := range v.AArrayExpr.Elements {
			if e.GetAArrayExpr() != nil {
				return Output{}, false, nil // a multidimensional array
			}
			p, err := a.part(e, sc, "")
			if err != nil {
				return Output{}, false, err
			}
			if p.Shape == ShapeArray {
				return Output{}, false, nil
			}
			parts = append(parts, p)
		}
		if len(parts) == 0 {
			return Output{}, false, nil
		}
		return shaped("array", ShapeArray, parts), true, nil
	case *pg.Node_SubLink:
		sel := v.SubLink.Subselect.GetSelectStmt()
		if sel == nil || v.SubLink.Testexpr != nil {
			return Output{}, false, nil
		}
		switch v.SubLink.SubLinkType {
		case pg.SubLinkType_EXPR_SUBLINK, pg.SubLinkType_ARRAY_SUBLINK:
		default:
			return Output{}, false, nil
		}
		outs, err := a.selectStmt(sel, sc)
		if err != nil || len(outs) != 1 {
			return Output{}, false, err
		}
		if v.SubLink.SubLinkType == pg.SubLinkType_ARRAY_SUBLINK {
			if outs[0].Shape == ShapeArray {
				return Output{}, false, nil
			}
			return shaped("array", ShapeArray, []Output{outs[0]}), true, nil
		}
		return outs[0], outs[0].Shape != ShapeNone, nil
	case *pg.Node_FuncCall:
		return a.funcShape(v.FuncCall, sc)
	}
	return Output{}, false, nil
}

// part is one key's, field's or element's value: its structure if it has
// one, else its sources as one leaf.
func (a *pgAnalyzer) part(e *pg.Node, sc *scope, name string) (Output, error) {
	o, ok, err := a.shape(e, sc)
	if err != nil {
		return Output{}, err
	}
	if !ok {
		src, err := a.expr(e, sc)
		if err != nil {
			return Output{}, err
		}
		o = Output{Sources: src, Bare: a.bare(e, sc)}
	}
	o.Name = name
	return o, nil
}

// wholeRow reports whether a one-word column reference names a relation
// (a whole-row reference) rather than a column, as columnRef resolves it:
// only when no level, however far out, has a column of that name.
func (a *pgAnalyzer) wholeRow(name string, sc *scope) (relation, bool) {
	for s := sc; s != nil; s = s.parent {
		for _, r := range s.rels {
			if r.opaque || r.table != nil {
				return relation{}, false // might be a column of theirs
			}
			for _, c := range r.cols {
				if c.Name == name && !r.hidden[name] {
					return relation{}, false
				}
			}
		}
	}
	return findRel(sc, name)
}

// starFields are the fields t.* stands for in ROW(t.*): t's columns, when
// sluice knows them.
func (a *pgAnalyzer) starFields(cr *pg.ColumnRef, sc *scope) ([]Output, bool) {
	if len(cr.Fields) < 2 {
		return nil, false
	}
	r, found := findRel(sc, cr.Fields[len(cr.Fields)-2].GetString_().GetSval())
	if !found || r.opaque || r.table != nil {
		return nil, false
	}
	cols := a.relCols(r)
	return cols, !slices.ContainsFunc(cols, func(o Output) bool { return o.Spread })
}

// rowShape is a relation's row as a composite value, its fields in order.
func (a *pgAnalyzer) rowShape(r relation) (Output, bool, error) {
	cols := a.relCols(r)
	if r.opaque || r.table != nil || slices.ContainsFunc(cols, func(o Output) bool { return o.Spread }) {
		return Output{}, false, nil // columns not known by name, or not how many
	}
	return shaped(r.alias, ShapeRecord, cols), true, nil
}

// funcShape traces the builtins that build JSON and arrays.
func (a *pgAnalyzer) funcShape(fc *pg.FuncCall, sc *scope) (Output, bool, error) {
	if len(fc.Funcname) > 1 && !strings.EqualFold(fc.Funcname[0].GetString_().GetSval(), "pg_catalog") {
		return Output{}, false, nil
	}
	if fc.AggStar || fc.AggWithinGroup || fc.FuncVariadic {
		return Output{}, false, nil // VARIADIC: the arguments are one array's elements
	}
	name := funcName(fc)
	if len(fc.Funcname) == 1 && a.userFunction(name) {
		return Output{}, false, nil // a user function of the name may be the one called
	}
	args := fc.Args
	whole := func() (Output, bool, error) {
		// Sources of the call as a whole (ORDER BY, FILTER, keys): parts
		// not accounted for mask the value whole if protected.
		src, err := a.expr(&pg.Node{Node: &pg.Node_FuncCall{FuncCall: fc}}, sc)
		return Output{Name: name, Sources: src, Shape: ShapeJSON}, err == nil, err
	}
	withCall := func(o Output) (Output, bool, error) {
		w, _, err := whole()
		if err != nil {
			return Output{}, false, err
		}
		// An aggregate's ORDER BY and FILTER, and a window, choose and
		// order the elements: masking the elements would not hide them,
		// even where a part also reads the column.
		steer := append(nodesOfSort(fc.AggOrder), fc.AggFilter)
		if win := fc.Over; win != nil {
			steer = append(steer, win.PartitionClause...)
			steer = append(steer, nodesOfSort(win.OrderClause)...)
			steer = append(steer, win.StartOffset, win.EndOffset)
		}
		for _, n := range steer {
			if n == nil {
				continue
			}
			src, err := a.expr(n, sc)
			if err != nil {
				return Output{}, false, err
			}
			o.Steer = union(slices.Clone(o.Steer), src...)
		}
		o.Name = name
		o.Sources = union(o.Sources, w.Sources...)
		return o, true, nil
	}
	switch name {
	case "row_to_json", "to_json", "to_jsonb", "array_to_json":
		if len(args) == 0 || (name != "row_to_json" && name != "array_to_json" && len(args) != 1) {
			return Output{}, false, nil
		}
		p, err := a.part(args[0], sc, name)
		if err != nil {
			return Output{}, false, err
		}
		return withCall(asJSON(p))
	case "json_agg", "jsonb_agg", "json_agg_strict", "jsonb_agg_strict":
		if len(args) != 1 {
			return Output{}, false, nil
		}
		p, err := a.part(args[0], sc, "")
		if err != nil {
			return Output{}, false, err
		}
		return withCall(shaped(name, ShapeJSONArray, []Output{leafOf(asJSON(p))}))
	case "array_agg":
		if len(args) != 1 {
			return Output{}, false, nil
		}
		p, err := a.part(args[0], sc, "")
		if err != nil || p.Shape == ShapeArray {
			return Output{}, false, err
		}
		return withCall(shaped(name, ShapeArray, []Output{p}))
	case "json_build_object", "jsonb_build_object":
		if len(args)%2 != 0 {
			return Output{}, false, nil
		}
		var parts []Output
		for i := 0; i < len(args); i += 2 {
			key, ok := jsonKey(args[i])
			if !ok {
				return whole()
			}
			p, err := a.part(args[i+1], sc, key)
			if err != nil {
				return Output{}, false, err
			}
			p = leafOf(asJSON(p))
			p.Name = key
			if j := indexOfPart(parts, key); j >= 0 {
				parts[j] = mergeParts(parts[j], p)
				continue
			}
			parts = append(parts, p)
		}
		return withCall(shaped(name, ShapeJSONObject, parts))
	case "json_build_array", "jsonb_build_array":
		var parts []Output
		for _, e := range args {
			p, err := a.part(e, sc, "")
			if err != nil {
				return Output{}, false, err
			}
			parts = append(parts, leafOf(asJSON(p)))
		}
		if len(parts) == 0 {
			return Output{}, false, nil
		}
		return withCall(shaped(name, ShapeJSONArray, parts))
	case "json_object_agg", "jsonb_object_agg", "json_object_agg_strict", "jsonb_object_agg_strict",
		"json_object_agg_unique", "jsonb_object_agg_unique", "json_object_agg_unique_strict", "jsonb_object_agg_unique_strict":
		if len(args) != 2 {
			return Output{}, false, nil
		}
		p, err := a.part(args[1], sc, "")
		if err != nil {
			return Output{}, false, err
		}
		// The keys are data, shown as they are: their sources decide the
		// value whole, even where the values also read them.
		keys, err := a.expr(args[0], sc)
		if err != nil {
			return Output{}, false, err
		}
		o := shaped(name, ShapeJSONMap, []Output{leafOf(asJSON(p))})
		o.Steer = keys
		return withCall(o)
	}
	return Output{}, false, nil
}

// jsonKey is the key json_build_object makes of a constant: a string or
// an integer as written. A constant of another type becomes that type's
// text ('a'::char(2) is "a ", '01'::int "1", 1e3 "1000"), which sluice
// does not compute: the key is not known.
func jsonKey(n *pg.Node) (string, bool) {
	if tc := n.GetTypeCast(); tc != nil {
		names := tc.TypeName.GetNames()
		if len(names) == 0 || len(tc.TypeName.GetTypmods()) > 0 || len(tc.TypeName.GetArrayBounds()) > 0 ||
			(len(names) > 1 && names[0].GetString_().GetSval() != "pg_catalog") {
			return "", false
		}
		switch names[len(names)-1].GetString_().GetSval() {
		case "text", "varchar":
		default:
			return "", false
		}
		if c := tc.Arg.GetAConst(); c == nil || c.GetSval() == nil {
			return "", false
		}
		n = tc.Arg
	}
	c := n.GetAConst()
	switch {
	case c == nil || c.Isnull:
		return "", false
	case c.GetSval() != nil:
		return c.GetSval().Sval, true
	case c.GetIval() != nil:
		return strconv.FormatInt(int64(c.GetIval().Ival), 10), true
	}
	return "", false
}

func indexOfPart(parts []Output, name string) int {
	for i, p := range parts {
		if p.Name == name {
			return i
		}
	}
	return -1
}
