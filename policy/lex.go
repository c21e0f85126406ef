package policy

import (
	"fmt"

	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/test_driver"
)

// How sluice reads a string, statement by statement: the constants each
// statement's SELECT list holds, in order. The differential lexing check
// compares this with what the server runs; nothing decides with it.

// LexPostgres reads sql as sluice's PostgreSQL analysis does.
func LexPostgres(sql string) ([][]string, error) {
	tree, err := pg.Parse(sql)
	if err != nil {
		return nil, err
	}
	var out [][]string
	for _, raw := range tree.Stmts {
		var lits []string
		if sel := raw.Stmt.GetSelectStmt(); sel != nil {
			for _, t := range sel.TargetList {
				if v, ok := pgConstText(t.GetResTarget().GetVal()); ok {
					lits = append(lits, v)
				} else {
					lits = append(lits, "?")
				}
			}
		}
		out = append(out, lits)
	}
	return out, nil
}

// LexMySQL reads sql as sluice's MySQL analysis does under env (sql_mode,
// the server's version for executable comments).
func LexMySQL(sql string, env MySQLSession) (out [][]string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("parser failed: %v", r)
		}
	}()
	text, err := openComments(sql, env)
	if err != nil {
		return nil, err
	}
	p := parser.New()
	p.SetSQLMode(env.Mode.mode)
	stmts, _, err := p.ParseSQL(text)
	if err != nil {
		return nil, err
	}
	for _, s := range stmts {
		var lits []string
		if sel, ok := s.(*ast.SelectStmt); ok && sel.Fields != nil {
			for _, f := range sel.Fields.Fields {
				if v, ok := f.Expr.(*test_driver.ValueExpr); ok && v.GetValue() != nil {
					switch x := v.GetValue().(type) {
					case string:
						lits = append(lits, x)
					case []byte:
						lits = append(lits, string(x))
					default:
						lits = append(lits, fmt.Sprint(x))
					}
				} else {
					lits = append(lits, "?")
				}
			}
		}
		out = append(out, lits)
	}
	return out, nil
}
