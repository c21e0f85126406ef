package policy

import (
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/test_driver"
)

// shape traces the JSON MySQL builds from parts (JSON_OBJECT, JSON_ARRAY,
// JSON_ARRAYAGG, JSON_OBJECTAGG), so masking masks only the keys and
// elements from protected columns and the JSON stays valid. Any other
// JSON-returning function is a JSON value masked as a whole.
func (a *myAnalyzer) shape(e ast.ExprNode, sc *scope) (Output, bool, error) {
	switch v := e.(type) {
	case *ast.ParenthesesExpr:
		return a.shape(v.Expr, sc)
	case *ast.ColumnNameExpr:
		o, err := a.columnRef(v.Name, sc)
		if err != nil {
			return Output{}, false, err
		}
		return o, o.Shape != ShapeNone, nil
	case *ast.SubqueryExpr:
		if v.Exists {
			return Output{}, false, nil
		}
		outs, err := a.resultSet(v.Query, sc)
		if err != nil || len(outs) != 1 {
			return Output{}, false, err
		}
		return outs[0], outs[0].Shape != ShapeNone, nil
	case *ast.AggregateFuncExpr:
		whole, err := a.expr(v, sc)
		if err != nil {
			return Output{}, false, err
		}
		switch f := strings.ToLower(v.F); f {
		case "json_arrayagg":
			if len(v.Args) != 1 {
				return Output{}, false, nil
			}
			p, err := a.jsonPart(v.Args[0], sc, "")
			if err != nil {
				return Output{}, false, err
			}
			o := shaped(f, ShapeJSONArray, []Output{p})
			o.Sources = union(o.Sources, whole...)
			return o, true, nil
		case "json_objectagg":
			if len(v.Args) != 2 {
				return Output{}, false, nil
			}
			p, err := a.jsonPart(v.Args[1], sc, "")
			if err != nil {
				return Output{}, false, err
			}
			// The keys are data, shown as they are: their sources decide
			// the value whole, even where the values also read them.
			keys, err := a.expr(v.Args[0], sc)
			if err != nil {
				return Output{}, false, err
			}
			o := shaped(f, ShapeJSONMap, []Output{p})
			o.Sources = union(o.Sources, whole...)
			o.Steer = keys
			return o, true, nil
		}
	case *ast.FuncCallExpr:
		if v.Tp == ast.FuncCallExprTypeGeneric || v.Schema.O != "" {
			return Output{}, false, nil // a stored function of a builtin's name
		}
		whole, err := a.expr(v, sc)
		if err != nil {
			return Output{}, false, err
		}
		wholeJSON := Output{Name: v.FnName.L, Sources: whole, Shape: ShapeJSON}
		switch v.FnName.L {
		case "json_object":
			if len(v.Args)%2 != 0 {
				return Output{}, false, nil
			}
			var parts []Output
			for i := 0; i < len(v.Args); i += 2 {
				key, ok := myJSONKey(v.Args[i])
				if !ok {
					return wholeJSON, true, nil
				}
				p, err := a.jsonPart(v.Args[i+1], sc, key)
				if err != nil {
					return Output{}, false, err
				}
				if j := indexOfPart(parts, key); j >= 0 {
					parts[j] = mergeParts(parts[j], p)
					continue
				}
				parts = append(parts, p)
			}
			o := shaped(v.FnName.L, ShapeJSONObject, parts)
			o.Sources = union(o.Sources, whole...)
			return o, true, nil
		case "json_array":
			var parts []Output
			for _, arg := range v.Args {
				p, err := a.jsonPart(arg, sc, "")
				if err != nil {
					return Output{}, false, err
				}
				parts = append(parts, p)
			}
			if len(parts) == 0 {
				return Output{}, false, nil
			}
			o := shaped(v.FnName.L, ShapeJSONArray, parts)
			o.Sources = union(o.Sources, whole...)
			return o, true, nil
		case "json_quote", "json_extract", "json_set", "json_insert", "json_replace", "json_remove",
			"json_merge", "json_merge_patch", "json_merge_preserve", "json_array_append", "json_array_insert",
			"json_keys", "json_compact", "json_detailed", "json_loose", "json_normalize", "json_query":
			return wholeJSON, true, nil
		}
	}
	return Output{}, false, nil
}

// jsonPart is one key's or element's value as JSON: its structure if it
// has one, else its sources as one leaf.
func (a *myAnalyzer) jsonPart(e ast.ExprNode, sc *scope, name string) (Output, error) {
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
	return leafOf(o), nil
}

// myJSONKey is the key JSON_OBJECT makes of a constant string. Only an
// ASCII one is known: a non-ASCII key is read in the literal's character
// set (_latin1'é' is "Ã©"), which sluice does not follow, and two keys
// the server makes one would share a plan.
func myJSONKey(e ast.ExprNode) (string, bool) {
	c, ok := e.(*test_driver.ValueExpr)
	if !ok {
		return "", false
	}
	key, ok := c.GetValue().(string)
	if !ok || c.Type.GetCharset() == "binary" {
		return "", false
	}
	for i := 0; i < len(key); i++ {
		if key[i] >= 0x80 {
			return "", false
		}
	}
	return key, true
}
