package policy

import (
	"fmt"
	"slices"

	pg "github.com/pganalyze/pg_query_go/v6"
)

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
		// EXCLUDED is the row proposed for insertion: its values are the
		// INSERT's own, already counted as flowing into the table.
		if len(tsc.rels) > 0 {
			ex := relation{alias: "excluded", cols: slices.Clone(tsc.rels[0].cols), table: tsc.rels[0].table}
			tsc.rels = append(tsc.rels, ex)
		}
		if err := a.setList(oc.TargetList, tsc); err != nil {
			return nil, err
		}
		if err := a.uses(tsc, oc.WhereClause); err != nil {
			return nil, err
		}
	}
	outs, err := a.targetList(s.ReturningList, tsc)
	if err != nil {
		return nil, err
	}
	return a.withRules(outs, s.Relation, pg.CmdType_CMD_INSERT)
}

// withRules adds to a write's results what the rules on its table return:
// a rule's SELECT (or RETURNING) runs with the write, and its rows reach
// the client. Which rows they are is not known position by position, so
// every result column derives from all of them.
func (a *pgAnalyzer) withRules(outs []Output, rv *pg.RangeVar, event pg.CmdType) ([]Output, error) {
	rd, ok := a.cat.(RuleDefiner)
	if !ok || rv == nil {
		return outs, nil
	}
	obj, err := a.table(rv)
	if err != nil {
		return nil, err
	}
	var ruled []Output
	for _, def := range rd.Rules(obj.Schema, obj.Name) {
		r, err := a.ruleOutputs(obj, def, event)
		if err != nil {
			return nil, err
		}
		ruled = append(ruled, r...)
	}
	if len(ruled) == 0 {
		return outs, nil
	}
	if len(outs) == 0 {
		for i := range ruled {
			ruled[i] = unshaped(ruled[i])
			ruled[i].Bare = false
		}
		return ruled, nil
	}
	all := sourcesOf(ruled)
	for i := range outs {
		outs[i] = unshaped(outs[i])
		outs[i].Sources = union(outs[i].Sources, all...)
		outs[i].Bare = false
	}
	return outs, nil
}

// ruleOutputs traces one rule's actions (NEW and OLD stand for the
// table's row) and returns what they return.
func (a *pgAnalyzer) ruleOutputs(table Object, def string, event pg.CmdType) ([]Output, error) {
	tree, err := pg.Parse(def)
	if err != nil || len(tree.Stmts) != 1 || tree.Stmts[0].Stmt.GetRuleStmt() == nil {
		return nil, fmt.Errorf("cannot trace a rule on %s.%s: its definition does not parse: %v", table.Schema, table.Name, err)
	}
	rule := tree.Stmts[0].Stmt.GetRuleStmt()
	if rule.Event != event {
		return nil, nil
	}
	cols, err := a.relationColumns(table)
	if err != nil {
		return nil, err
	}
	row := &scope{rels: []relation{{alias: "new", cols: cols}, {alias: "old", cols: cols}}}
	inner := &pgAnalyzer{cat: a.cat, assigned: map[*pg.RangeVar]bool{}, work: a.work, views: a.views}
	var outs []Output
	for _, act := range rule.Actions {
		var o []Output
		switch act.Node.(type) {
		case *pg.Node_SelectStmt, *pg.Node_InsertStmt, *pg.Node_UpdateStmt, *pg.Node_DeleteStmt:
			if o, err = inner.query(act, row); err != nil {
				return nil, fmt.Errorf("cannot trace a rule on %s.%s: %w", table.Schema, table.Name, err)
			}
		}
		outs = append(outs, o...)
	}
	return outs, nil
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
	outs, err := a.targetList(returning, tsc)
	if err != nil {
		return nil, err
	}
	event := pg.CmdType_CMD_UPDATE
	if action == "delete" {
		event = pg.CmdType_CMD_DELETE
	}
	return a.withRules(outs, rel, event)
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
