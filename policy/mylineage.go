package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/mysql"
)

// with registers a WITH clause's CTEs in sc (MySQL names fold case).
func (a *myAnalyzer) with(w *ast.WithClause, sc *scope) error {
	if w == nil {
		return nil
	}
	for _, cte := range w.CTEs {
		var aliases []string
		for _, c := range cte.ColNameList {
			aliases = append(aliases, c.O)
		}
		var seed func() ([]Output, error)
		if so, ok := cte.Query.Query.(*ast.SetOprStmt); w.IsRecursive && ok && so.SelectList != nil && len(so.SelectList.Selects) > 0 {
			seed = func() ([]Output, error) { return a.resultSet(so.SelectList.Selects[0], sc) }
		}
		if err := sc.defineCTE(strings.ToLower(cte.Name.O), aliases, w.IsRecursive, seed, func() ([]Output, error) {
			return a.resultSet(cte.Query.Query, sc)
		}); err != nil {
			return err
		}
	}
	return nil
}

func (a *myAnalyzer) resultSet(n ast.Node, parent *scope) ([]Output, error) {
	if *a.work++; *a.work > maxWork {
		return nil, errTooComplex
	}
	switch q := n.(type) {
	case *ast.SelectStmt:
		return a.selectStmt(q, parent)
	case *ast.SetOprStmt:
		return a.setOpr(q, parent)
	case *ast.SubqueryExpr:
		return a.resultSet(q.Query, parent)
	}
	return nil, fmt.Errorf("sluice does not understand a %T in a query", n)
}

func (a *myAnalyzer) setOpr(s *ast.SetOprStmt, parent *scope) ([]Output, error) {
	sc := &scope{parent: parent}
	if err := a.with(s.With, sc); err != nil {
		return nil, err
	}
	if s.SelectList != nil {
		if err := a.with(s.SelectList.With, sc); err != nil {
			return nil, err
		}
	}
	var outs []Output
	for i, n := range s.SelectList.Selects {
		o, err := a.resultSet(n, sc)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			outs = o
			continue
		}
		for j := range outs {
			if j < len(o) {
				outs[j] = mergeParts(outs[j], o[j])
			}
		}
	}
	if s.OrderBy != nil {
		for _, it := range s.OrderBy.Items {
			if err := a.usesByOutput(sc, outs, it.Expr); err != nil {
				return nil, err
			}
		}
	}
	return outs, nil
}

func (a *myAnalyzer) selectStmt(sel *ast.SelectStmt, parent *scope) ([]Output, error) {
	sc := &scope{parent: parent}
	if err := a.with(sel.With, sc); err != nil {
		return nil, err
	}
	if sel.Kind == ast.SelectStmtKindValues || len(sel.Lists) > 0 {
		var outs []Output
		for _, row := range sel.Lists {
			for i, e := range row.Values {
				src, err := a.expr(e, sc)
				if err != nil {
					return nil, err
				}
				if i >= len(outs) {
					outs = append(outs, Output{Name: fmt.Sprintf("column_%d", i), Bare: true})
				}
				o := Output{Sources: src, Bare: a.bare(e, sc)}
				outs[i].Bare = bareUnion(outs[i], o)
				outs[i].Sources = union(outs[i].Sources, src...)
			}
		}
		return outs, nil
	}
	if sel.From != nil && sel.From.TableRefs != nil {
		if err := a.fromItem(sel.From.TableRefs, sc); err != nil {
			return nil, err
		}
	}
	var outs []Output
	if sel.Fields != nil {
		for _, f := range sel.Fields.Fields {
			if f.WildCard != nil {
				outs = append(outs, a.star(f.WildCard, sc)...)
				continue
			}
			src, err := a.expr(f.Expr, sc)
			if err != nil {
				return nil, err
			}
			o := Output{Name: fieldName(f), Sources: src, Bare: a.bare(f.Expr, sc)}
			sh, ok, err := a.shape(f.Expr, sc)
			if err != nil {
				return nil, err
			}
			if ok {
				o = withShape(o, sh)
			}
			outs = append(outs, o)
		}
	}
	a.lockInfo(sel.LockInfo, sc)
	steer := []ast.ExprNode{sel.Where}
	for _, w := range sel.WindowSpecs {
		if w.PartitionBy != nil {
			for _, it := range w.PartitionBy.Items {
				steer = append(steer, it.Expr)
			}
		}
		if w.OrderBy != nil {
			for _, it := range w.OrderBy.Items {
				steer = append(steer, it.Expr)
			}
		}
	}
	if err := a.uses(sc, steer...); err != nil {
		return nil, err
	}
	// GROUP BY, HAVING and ORDER BY may also name an output or give its
	// position.
	var byOutput []ast.ExprNode
	if sel.GroupBy != nil {
		for _, it := range sel.GroupBy.Items {
			byOutput = append(byOutput, it.Expr)
		}
	}
	if sel.Having != nil {
		byOutput = append(byOutput, sel.Having.Expr)
	}
	if sel.OrderBy != nil {
		for _, it := range sel.OrderBy.Items {
			byOutput = append(byOutput, it.Expr)
		}
	}
	if err := a.usesByOutput(sc, outs, byOutput...); err != nil {
		return nil, err
	}
	return outs, nil
}

func fieldName(f *ast.SelectField) string {
	if f.AsName.O != "" {
		return f.AsName.O
	}
	if c, ok := f.Expr.(*ast.ColumnNameExpr); ok {
		return c.Name.Name.O
	}
	// MySQL names other columns by the expression as written.
	return strings.TrimSpace(f.Text())
}

func (a *myAnalyzer) star(w *ast.WildCardField, sc *scope) []Output {
	var out []Output
	for _, r := range sc.rels {
		if w.Table.O != "" && !strings.EqualFold(r.alias, w.Table.O) {
			continue
		}
		cols := myRelCols(r)
		if w.Table.O == "" && len(r.hidden) > 0 {
			cols = slices.DeleteFunc(cols, func(c Output) bool { return r.hidden[strings.ToLower(c.Name)] })
		}
		out = append(out, cols...)
	}
	return out
}

func myRelCols(r relation) []Output {
	if r.opaque {
		return []Output{{Name: r.alias, Sources: r.sources}}
	}
	if r.table != nil {
		return []Output{{Name: "*", Sources: []Column{{Schema: r.table.Schema, Table: r.table.Name, Name: "*"}}}}
	}
	return slices.Clone(r.cols)
}

func (a *myAnalyzer) fromItem(n ast.ResultSetNode, sc *scope) error {
	switch f := n.(type) {
	case *ast.Join:
		start := len(sc.rels)
		if f.Left != nil {
			if err := a.fromItem(f.Left, sc); err != nil {
				return err
			}
		}
		mid := len(sc.rels)
		if f.Right != nil {
			if err := a.fromItem(f.Right, sc); err != nil {
				return err
			}
		}
		if f.On != nil {
			if err := a.uses(sc, f.On.Expr); err != nil {
				return err
			}
		}
		using := f.Using
		if f.NaturalJoin {
			using = nil
			visible := func(r relation) []Output {
				cols := myRelCols(r)
				return slices.DeleteFunc(cols, func(c Output) bool { return r.hidden[strings.ToLower(c.Name)] })
			}
			common, _ := commonColumns(visible, sc.rels[start:mid], sc.rels[mid:])
			for _, n := range common {
				using = append(using, &ast.ColumnName{Name: ast.NewCIStr(n)})
			}
		}
		var merged []Output
		for _, u := range using {
			src, err := a.column(&ast.ColumnName{Name: u.Name}, sc)
			if err != nil {
				return err
			}
			a.use(src...)
			merged = append(merged, Output{Name: u.Name.O, Sources: src})
		}
		if len(merged) > 0 && mid > start && !slices.ContainsFunc(sc.rels[start:], func(r relation) bool { return r.opaque || r.table != nil }) {
			// As PostgreSQL, MySQL returns a USING column once, first, for
			// * (from both sides: never a bare value of one column).
			for i := start; i < len(sc.rels); i++ {
				h := maps.Clone(sc.rels[i].hidden)
				if h == nil {
					h = map[string]bool{}
				}
				for _, m := range merged {
					h[strings.ToLower(m.Name)] = true
				}
				sc.rels[i].hidden = h
			}
			sc.rels = slices.Insert(sc.rels, start, relation{cols: merged})
		}
	case *ast.TableSource:
		alias := f.AsName.O
		switch src := f.Source.(type) {
		case *ast.TableName:
			return a.addTable(sc, src, alias)
		default:
			outs, err := a.resultSet(src, sc)
			if err != nil {
				return err
			}
			for i, c := range f.ColumnNames {
				if i < len(outs) {
					outs[i].Name = c.O
				}
			}
			sc.rels = append(sc.rels, relation{alias: alias, cols: outs})
		}
	case *ast.TableName:
		return a.addTable(sc, f, "")
	default:
		return fmt.Errorf("sluice does not understand a %T in FROM", n)
	}
	return nil
}

func (a *myAnalyzer) addTable(sc *scope, tn *ast.TableName, alias string) error {
	if alias == "" {
		alias = tn.Name.O
	}
	if tn.Schema.O == "" {
		if cols, ok := sc.cte(strings.ToLower(tn.Name.O)); ok {
			a.assigned[tn] = true
			sc.rels = append(sc.rels, relation{alias: alias, cols: slices.Clone(cols)})
			return nil
		}
	}
	if err := a.rel("select", tn); err != nil {
		return err
	}
	obj, _ := a.table(tn)
	r := relation{alias: alias, obj: &obj}
	if a.cat == nil {
		r.table = &obj
	} else {
		var err error
		if r.cols, err = a.relationColumns(obj); err != nil {
			return err
		}
	}
	sc.rels = append(sc.rels, r)
	return nil
}

// relationColumns are a catalog relation's columns; a view's also derive
// from what its definition reads.
func (a *myAnalyzer) relationColumns(obj Object) ([]Output, error) {
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
	if a.views[obj] {
		return nil, fmt.Errorf("view %s.%s is defined through itself", obj.Schema, obj.Name)
	}
	if len(a.views) >= maxViewDepth {
		return nil, fmt.Errorf("views nest deeper than %d levels at %s.%s", maxViewDepth, obj.Schema, obj.Name)
	}
	// information_schema.VIEWS prints the definition with every name
	// qualified, in the server's default mode.
	p := parser.New()
	stmts, _, err := p.ParseSQL(def)
	if err != nil || len(stmts) != 1 {
		return nil, fmt.Errorf("cannot trace view %s.%s: its definition does not parse: %v", obj.Schema, obj.Name, err)
	}
	inner := &myAnalyzer{db: obj.Schema, env: a.env, cat: a.cat, assigned: map[*ast.TableName]bool{}, work: a.work, views: maps.Clone(a.views)}
	if inner.views == nil {
		inner.views = map[Object]bool{}
	}
	inner.views[obj] = true
	outs, err := inner.resultSet(stmts[0], nil)
	if err != nil {
		return nil, fmt.Errorf("cannot trace view %s.%s: %w", obj.Schema, obj.Name, err)
	}
	return throughView(obj, cols, outs), nil
}

func (a *myAnalyzer) uses(sc *scope, exprs ...ast.ExprNode) error {
	for _, e := range exprs {
		if e == nil {
			continue
		}
		src, err := a.expr(e, sc)
		if err != nil {
			return err
		}
		a.use(src...)
	}
	return nil
}

// usesByOutput records GROUP BY, HAVING and ORDER BY expressions, whose
// names may be outputs (an alias) and whose numbers are positions: those
// steer the query with their output's sources. Every column an alias
// stands for counts, wherever it appears in the expression.
func (a *myAnalyzer) usesByOutput(sc *scope, outs []Output, exprs ...ast.ExprNode) error {
	for _, e := range exprs {
		if e == nil {
			continue
		}
		if p, ok := e.(*ast.PositionExpr); ok {
			if p.N >= 1 && p.N <= len(outs) {
				a.use(outs[p.N-1].Sources...)
			}
			continue
		}
		var err error
		e.Accept(&visitor{enter: func(n ast.Node) bool {
			if err != nil {
				return false
			}
			switch v := n.(type) {
			case *ast.ColumnNameExpr:
				named := false
				if v.Name.Table.O == "" {
					for _, o := range outs {
						if strings.EqualFold(o.Name, v.Name.Name.O) {
							a.use(o.Sources...)
							named = true
						}
					}
				}
				src, e := a.column(v.Name, sc)
				var unknown *unknownColumnError
				if e != nil && !(named && asUnknown(e, &unknown)) {
					err = e
				}
				a.use(src...)
				return false
			case *ast.SubqueryExpr:
				src, e := a.expr(v, sc)
				if e != nil {
					err = e
				}
				a.use(src...)
				return false
			}
			return true
		}})
		if err != nil {
			return err
		}
	}
	return nil
}

// column resolves a column name to the columns it reads.
func (a *myAnalyzer) column(cn *ast.ColumnName, sc *scope) ([]Column, error) {
	o, err := a.columnRef(cn, sc)
	return o.Sources, err
}

// columnRef resolves a column name through the scopes (MySQL column names
// are case-insensitive).
func (a *myAnalyzer) columnRef(cn *ast.ColumnName, sc *scope) (Output, error) {
	col := cn.Name.O
	for s := sc; s != nil; s = s.parent {
		if cn.Table.O == "" {
			var found, only Output
			n := 0
			for _, r := range s.rels {
				switch {
				case r.opaque:
					found.Sources = union(found.Sources, r.sources...)
					n += 2 // never bare
				case r.table != nil:
					found.Sources = union(found.Sources, Column{Schema: r.table.Schema, Table: r.table.Name, Name: col})
					found.Bare = true
					n++
				default:
					for _, c := range r.cols {
						if strings.EqualFold(c.Name, col) && !r.hidden[strings.ToLower(col)] {
							found.Sources = union(found.Sources, c.Sources...)
							found.Bare = c.Bare
							only = c
							n++
						}
					}
				}
			}
			if n > 0 {
				// Several matches: MySQL errors; all are taken.
				found.Bare = found.Bare && n == 1
				if n == 1 && only.Shape != ShapeNone {
					return only, nil // one column, its structure kept
				}
				return found, nil
			}
			continue
		}
		for _, r := range s.rels {
			if !strings.EqualFold(r.alias, cn.Table.O) {
				continue
			}
			switch {
			case r.opaque:
				return Output{Sources: r.sources}, nil
			case r.table != nil:
				return Output{Sources: []Column{{Schema: r.table.Schema, Table: r.table.Name, Name: col}}, Bare: true}, nil
			}
			for _, c := range r.cols {
				if strings.EqualFold(c.Name, col) {
					return c, nil
				}
			}
			return Output{}, &unknownColumnError{cn.Table.O + "." + col}
		}
	}
	return Output{}, &unknownColumnError{col}
}

// bare reports whether an expression's values are a column's values as
// stored: a column reference, possibly cast to an unbounded character type.
func (a *myAnalyzer) bare(e ast.ExprNode, sc *scope) bool {
	switch v := e.(type) {
	case *ast.ColumnNameExpr:
		o, err := a.columnRef(v.Name, sc)
		return err == nil && o.Bare
	case *ast.ParenthesesExpr:
		return a.bare(v.Expr, sc)
	case *ast.FuncCastExpr:
		if v.Tp != nil && v.Tp.GetType() == mysql.TypeVarString && v.Tp.GetFlen() < 0 {
			return a.bare(v.Expr, sc)
		}
	}
	return false
}

// expr returns the table columns an expression's value derives from.
func (a *myAnalyzer) expr(e ast.Node, sc *scope) ([]Column, error) {
	var out []Column
	var err error
	e.Accept(&visitor{enter: func(n ast.Node) bool {
		if err != nil {
			return false
		}
		switch v := n.(type) {
		case *ast.ColumnNameExpr:
			src, e := a.column(v.Name, sc)
			if e != nil {
				err = e
				return false
			}
			out = union(out, src...)
			return false
		case *ast.SubqueryExpr:
			outs, e := a.resultSet(v.Query, sc)
			if e != nil {
				err = e
				return false
			}
			if v.Exists {
				a.use(sourcesOf(outs)...)
			} else {
				out = union(out, sourcesOf(outs)...)
			}
			return false
		}
		return true
	}})
	return out, err
}

// tableRefs adds the tables an UPDATE or DELETE names to sc.
func (a *myAnalyzer) tableRefs(refs *ast.TableRefsClause, sc *scope) error {
	if refs == nil || refs.TableRefs == nil {
		return nil
	}
	return a.fromItem(refs.TableRefs, sc)
}

func (a *myAnalyzer) insert(s *ast.InsertStmt) error {
	sc := &scope{}
	if s.Select != nil {
		outs, err := a.resultSet(s.Select, sc)
		if err != nil {
			return err
		}
		a.use(sourcesOf(outs)...)
	}
	tn := firstTable(s.Table)
	if tn == nil {
		return fmt.Errorf("INSERT without a table")
	}
	if err := a.rel("insert", tn); err != nil {
		return err
	}
	if s.IsReplace {
		if err := a.rel("delete", tn); err != nil {
			return err
		}
	}
	tsc := &scope{}
	if err := a.addTable(tsc, tn, ""); err != nil {
		return err
	}
	for _, row := range s.Lists {
		for _, e := range row {
			if err := a.uses(tsc, e); err != nil {
				return err
			}
		}
	}
	if len(s.OnDuplicate) > 0 {
		if err := a.rel("update", tn); err != nil {
			return err
		}
		for _, as := range s.OnDuplicate {
			if err := a.uses(tsc, as.Expr); err != nil {
				return err
			}
		}
	}
	return nil
}

func firstTable(refs *ast.TableRefsClause) *ast.TableName {
	if refs == nil || refs.TableRefs == nil {
		return nil
	}
	var tn *ast.TableName
	refs.TableRefs.Accept(&visitor{enter: func(n ast.Node) bool {
		if t, ok := n.(*ast.TableName); ok && tn == nil {
			tn = t
		}
		return tn == nil
	}})
	return tn
}

func (a *myAnalyzer) update(s *ast.UpdateStmt) error {
	sc := &scope{}
	if err := a.with(s.With, sc); err != nil {
		return err
	}
	if err := a.tableRefs(s.TableRefs, sc); err != nil {
		return err
	}
	// The tables assigned to are written; all tables named are read.
	for _, as := range s.List {
		tbl := as.Column.Table.O
		for _, r := range sc.rels {
			if r.table == nil && len(r.cols) == 0 {
				continue
			}
			if tbl == "" || strings.EqualFold(tbl, r.alias) {
				if obj, ok := a.relObject(r); ok {
					a.add("update", obj)
				}
				if tbl == "" && len(sc.rels) > 1 {
					continue
				}
				break
			}
		}
		if err := a.uses(sc, as.Expr); err != nil {
			return err
		}
	}
	if err := a.uses(sc, s.Where); err != nil {
		return err
	}
	a.st.Bounded = s.Where != nil || s.Limit != nil
	return nil
}

// relObject is the table behind a FROM entry, if it is one.
func (a *myAnalyzer) relObject(r relation) (Object, bool) {
	if r.table != nil {
		return *r.table, true
	}
	for _, c := range r.cols {
		for _, s := range c.Sources {
			if len(r.cols) > 0 && s.Name == c.Name {
				return Object{Kind: ObjectTable, Schema: s.Schema, Name: s.Table}, true
			}
		}
		break
	}
	return Object{}, false
}

func (a *myAnalyzer) delete(s *ast.DeleteStmt) error {
	sc := &scope{}
	if err := a.with(s.With, sc); err != nil {
		return err
	}
	if err := a.tableRefs(s.TableRefs, sc); err != nil {
		return err
	}
	if s.IsMultiTable && s.Tables != nil {
		for _, tn := range s.Tables.Tables {
			a.assigned[tn] = true
			r, ok := myFindRel(sc, tn.Name.O)
			if !ok {
				if err := a.rel("delete", tn); err != nil {
					return err
				}
				continue
			}
			if obj, ok := a.relObject(r); ok {
				a.add("delete", obj)
			}
		}
	} else if tn := firstTable(s.TableRefs); tn != nil {
		if err := a.rel("delete", tn); err != nil {
			return err
		}
	}
	if err := a.uses(sc, s.Where); err != nil {
		return err
	}
	a.st.Bounded = s.Where != nil || s.Limit != nil
	return nil
}

func myFindRel(sc *scope, alias string) (relation, bool) {
	for _, r := range sc.rels {
		if strings.EqualFold(r.alias, alias) {
			return r, true
		}
	}
	return relation{}, false
}
