package e2e

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluicedb/sluice/devstack"
	"github.com/sluicedb/sluice/policy"
)

// The differential lexing check: random statements built from quotes,
// backslashes, dollar quotes, comments, semicolons and multibyte bytes, run
// straight on the database under every lexical setting sluice allows.
// Wherever sluice's parser accepts a string, the statements the server
// runs and the literals it returns must be the ones sluice read. It runs
// SLUICE_LEXING_DURATION per dialect (default 15s; the check is
// 5m).

func lexingDuration(t *testing.T) time.Duration {
	if v := os.Getenv("SLUICE_LEXING_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	return 15 * time.Second
}

// lexStats counts what a run saw.
type lexStats struct {
	tried, parsed, ran, serverRefused, disagreed int
}

func (s lexStats) String() string {
	return fmt.Sprintf("%d strings, %d parsed by sluice, %d run by the server (%d it refused), %d disagreements",
		s.tried, s.parsed, s.ran, s.serverRefused, s.disagreed)
}

// gen builds random SQL from a dialect's tokens.
type gen struct {
	r       *rand.Rand
	dialect string
	// high are bytes of the session's encoding that are not ASCII: whole
	// characters of it, so a valid string stays valid.
	high []string
}

func (g *gen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

// content is a string body: ordinary and tricky characters, with quote the
// delimiter (doubled when escaped) and backslashes as the dialect reads them.
func (g *gen) content(quote byte, backslashes bool) string {
	var b strings.Builder
	for range g.r.IntN(8) {
		switch g.r.IntN(14) {
		case 0:
			if quote != 0 {
				b.WriteString(string([]byte{quote, quote}))
			}
		case 1:
			if backslashes {
				b.WriteString(`\` + string(quote))
			} else {
				b.WriteString(`\\`)
			}
		case 2:
			b.WriteString(`\`)
			if !backslashes || g.r.IntN(2) == 0 {
				b.WriteString(`\`) // keep the string closed
			}
		case 3:
			b.WriteString(";")
		case 4:
			b.WriteString(g.pick("--", "/*", "*/", "#", "/*!", "*/ ;"))
		case 5:
			b.WriteString(g.pick("$$", "$a$", "$"))
		case 6:
			if len(g.high) > 0 {
				b.WriteString(g.high[g.r.IntN(len(g.high))])
			}
		case 7:
			b.WriteString(g.pick(`'`, `"`, "`"))
		case 8:
			b.WriteString("\n")
		case 9:
			if backslashes {
				b.WriteString(g.pick(`\n`, `\t`, `\0`, `\Z`, `\%`, `\_`, `\b`, `\x41`))
			}
		default:
			b.WriteString(g.pick("a", "b", "x y", "DELETE", "1"))
		}
	}
	s := b.String()
	if quote != 0 {
		// A lone delimiter would end the string early: sometimes keep it,
		// since that is what attacks do.
		if g.r.IntN(4) != 0 {
			s = strings.ReplaceAll(s, string(quote), string([]byte{quote, quote}))
		}
	}
	return s
}

func (g *gen) literal() string {
	if g.dialect == "postgres" {
		switch g.r.IntN(5) {
		case 0:
			return "E'" + g.content('\'', true) + "'"
		case 1:
			tag := g.pick("", "q", "x1")
			body := strings.ReplaceAll(g.content(0, false), "$"+tag+"$", "")
			return "$" + tag + "$" + body + "$" + tag + "$"
		case 2:
			return "U&'" + g.pick("a", `\0061`, `\+000061`, `b\\c`) + "'"
		default:
			return "'" + g.content('\'', false) + "'"
		}
	}
	switch g.r.IntN(4) {
	case 0:
		return `"` + g.content('"', true) + `"`
	case 1:
		return "'" + g.content('\'', true) + "' '" + g.content('\'', true) + "'"
	default:
		return "'" + g.content('\'', true) + "'"
	}
}

// gap is what separates tokens: spaces, comments, and bytes lexers may
// classify differently (control characters, a latin1 no-break space, NEL,
// "--" followed by one of them, NUL in a line comment).
func (g *gen) gap() string {
	switch g.r.IntN(10) {
	case 0:
		return " /* " + g.content(0, false) + " */ "
	case 1:
		return " -- " + g.content(0, false) + "\n"
	case 2:
		if g.dialect == "postgres" {
			return " /* a /* nested */ b */ "
		}
		return " # " + g.content(0, false) + "\n"
	case 3:
		return g.pick(" --\xa0", " --\x01", " --\x85", " --\v", " --\f", " --\x7f", " # \x00", " -- \x00") + g.content(0, false) + "\n"
	case 4:
		if g.dialect == "mysql" {
			return g.pick(" /*+ ", " /*T! ", " /*T![clustered_index] ") + g.pick(", 'c'", "SET_VAR(sql_mode='')", g.content(0, false)) + " */ "
		}
		return g.pick("\v", "\f", "\r")
	case 5:
		return g.pick("\v", "\f", "\r", "\x01", "\x00", "\x7f", "\xa0", "\x85", "\xc2\xa0")
	}
	return g.pick(" ", "\n", "\t", "  ")
}

// versioned is a MySQL executable comment adding a column, which the
// server runs or skips by its version.
func (g *gen) versioned() string {
	return " " + g.pick("/*!", "/*!40101 ", "/*!50700 ", "/*!99999 ", "/*!110000 ", "/*M!100000 ", "/*M!999999 ", "/*!1234 ") + ", 'c'" + g.pick(" */", "*/", " ;*/") + " "
}

func (g *gen) statement() string {
	var b strings.Builder
	b.WriteString("SELECT ")
	for i := range 1 + g.r.IntN(3) {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(g.gap())
		b.WriteString(g.literal())
		if g.dialect == "mysql" && g.r.IntN(4) == 0 {
			b.WriteString(g.versioned())
		}
	}
	return b.String()
}

// sql is one to three statements; now and then a raw fragment is spliced
// in anywhere, to cut strings and comments where attackers would.
func (g *gen) sql() string {
	var parts []string
	for range 1 + g.r.IntN(3) {
		parts = append(parts, g.statement())
	}
	s := strings.Join(parts, ";"+g.gap())
	if g.r.IntN(3) == 0 {
		frag := g.pick(`'`, `\`, `\'`, `;`, `--`, `/*`, `*/`, `$$`, `"`, "#", "/*!", "E'", "\n")
		i := g.r.IntN(len(s) + 1)
		s = s[:i] + frag + s[i:]
	}
	return s
}

func agree(sluice, server [][]string) bool {
	if len(sluice) != len(server) {
		return false
	}
	for i := range sluice {
		if len(sluice[i]) != len(server[i]) {
			return false
		}
		for j := range sluice[i] {
			if sluice[i][j] != "?" && sluice[i][j] != server[i][j] {
				return false
			}
		}
	}
	return true
}

func TestLexingDifferentialPostgres(t *testing.T) {
	ctx := context.Background()
	encodings := map[string][]string{
		"UTF8":      {"é", "表", "\U0001F600"},
		"LATIN1":    {"\xe9", "\xff", "\xa0"},
		"SQL_ASCII": {"\xe9", "\x95\x5c", "\xa1"},
		"EUC_JP":    {"\xa4\xa2", "\xb0\xa1", "\x8e\xb1"},
		"WIN1252":   {"\x80", "\xe9"},
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	deadline := time.Now().Add(lexingDuration(t))
	var total lexStats
	var setting uint64
	for time.Now().Before(deadline) {
		for enc, high := range encodings {
			for _, bq := range []string{"safe_encoding", "off"} {
				url := fmt.Sprintf("postgres://%s:%s@%s/%s?client_encoding=%s&standard_conforming_strings=on&backslash_quote=%s",
					devstack.AgentDBUser, devstack.AgentDBPass, stack.PG.Addr(), devstack.DemoDatabase, enc, bq)
				conn, err := pgconn.Connect(ctx, url)
				if err != nil {
					t.Fatal(err)
				}
				setting++
				g := &gen{r: rand.New(rand.NewPCG(seed, setting)), dialect: "postgres", high: high}
				st := runLexing(t, g, 400, func(sql string) ([][]string, bool) {
					results, err := conn.Exec(ctx, sql).ReadAll()
					if err != nil && len(results) == 0 {
						return nil, false
					}
					var out [][]string
					for _, r := range results {
						if r.Err != nil {
							break
						}
						if len(r.FieldDescriptions) == 0 && len(r.CommandTag.String()) == 0 {
							continue // an empty query (only comments): no statement
						}
						var lits []string
						if len(r.Rows) > 0 {
							for _, v := range r.Rows[0] {
								lits = append(lits, string(v))
							}
						}
						out = append(out, lits)
					}
					return out, err == nil
				}, policy.LexPostgres, fmt.Sprintf("client_encoding %s, backslash_quote %s", enc, bq))
				conn.Close(ctx)
				total.tried += st.tried
				total.parsed += st.parsed
				total.ran += st.ran
				total.serverRefused += st.serverRefused
				total.disagreed += st.disagreed
			}
		}
	}
	t.Logf("PostgreSQL: %s", total)
	if total.disagreed > 0 {
		t.Fatalf("sluice and PostgreSQL read %d strings differently", total.disagreed)
	}
}

func TestLexingDifferentialMySQL(t *testing.T) {
	ctx := context.Background()
	charsets := map[string][]string{
		"utf8mb4": {"é", "表", "\U0001F600"},
		"latin1":  {"\xe9", "\xff", "\xa0"},
		"ujis":    {"\xa4\xa2", "\xb0\xa1"},
		"binary":  {"\xe9", "\x95\x5c"},
	}
	modes := []string{"", "ANSI_QUOTES", "NO_BACKSLASH_ESCAPES", "ANSI_QUOTES,NO_BACKSLASH_ESCAPES", "ANSI", "PIPES_AS_CONCAT", "HIGH_NOT_PRECEDENCE,IGNORE_SPACE", "TRADITIONAL"}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	deadline := time.Now().Add(lexingDuration(t))
	var total lexStats
	var setting uint64
	for time.Now().Before(deadline) {
		for cs, high := range charsets {
			for _, mode := range modes {
				cfg, err := gomysql.ParseDSN(stack.Maria.DSN(devstack.AgentDBUser, devstack.AgentDBPass, devstack.DemoDatabase))
				if err != nil {
					t.Fatal(err)
				}
				cfg.MultiStatements = true
				cfg.Params = map[string]string{"charset": cs}
				db, err := sql.Open("mysql", cfg.FormatDSN())
				if err != nil {
					t.Fatal(err)
				}
				conn, err := db.Conn(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := conn.ExecContext(ctx, "SET SESSION sql_mode = '"+mode+"'"); err != nil {
					t.Fatal(err)
				}
				m, err := policy.ParseSQLMode(mode)
				if err != nil {
					t.Fatal(err)
				}
				env := policy.MySQLSession{Database: devstack.DemoDatabase, Mode: m, Version: mariaVersion(t, conn), MariaDB: true}
				setting++
				g := &gen{r: rand.New(rand.NewPCG(seed, setting)), dialect: "mysql", high: high}
				st := runLexing(t, g, 300, func(q string) ([][]string, bool) {
					return mysqlResults(ctx, conn, q)
				}, func(q string) ([][]string, error) { return policy.LexMySQL(q, env) }, fmt.Sprintf("charset %s, sql_mode %q", cs, mode))
				conn.Close()
				db.Close()
				total.tried += st.tried
				total.parsed += st.parsed
				total.ran += st.ran
				total.serverRefused += st.serverRefused
				total.disagreed += st.disagreed
			}
		}
	}
	t.Logf("MariaDB: %s", total)
	if total.disagreed > 0 {
		t.Fatalf("sluice and MariaDB read %d strings differently", total.disagreed)
	}
}

func mariaVersion(t *testing.T, conn *sql.Conn) int {
	var v string
	if err := conn.QueryRowContext(context.Background(), "SELECT VERSION()").Scan(&v); err != nil {
		t.Fatal(err)
	}
	var a, b, c int
	fmt.Sscanf(v, "%d.%d.%d", &a, &b, &c)
	return a*10000 + b*100 + c
}

// mysqlResults runs q and returns the first row of each result it got
// before any error; complete is false when the server stopped at an error.
func mysqlResults(ctx context.Context, conn *sql.Conn, q string) ([][]string, bool) {
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		return nil, false
	}
	defer rows.Close()
	var out [][]string
	for {
		cols, _ := rows.Columns()
		if len(cols) == 0 {
			// Only comments: no statement ran.
			if !rows.NextResultSet() {
				break
			}
			continue
		}
		var first []string
		if rows.Next() {
			vals := make([]sql.RawBytes, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				return out, false
			}
			for _, v := range vals {
				first = append(first, string(v))
			}
		}
		out = append(out, first)
		if !rows.NextResultSet() {
			break
		}
	}
	return out, rows.Err() == nil
}

// runLexing tries n strings on one session and reports a disagreement
// wherever sluice's parser accepts a string and the server runs other
// statements or returns other literals.
func runLexing(t *testing.T, g *gen, n int, server func(string) ([][]string, bool), sluice func(string) ([][]string, error), setting string) lexStats {
	t.Helper()
	var st lexStats
	for range n {
		q := g.sql()
		st.tried++
		want, err := sluice(q)
		if err != nil {
			continue // sluice refuses what it cannot read: nothing is sent
		}
		st.parsed++
		got, complete := server(q)
		if len(got) == 0 && !complete {
			st.serverRefused++
			continue
		}
		st.ran++
		// A server that stopped at an error ran a prefix of the statements.
		if !complete && len(got) < len(want) {
			want = want[:len(got)]
		}
		if !agree(want, got) {
			st.disagreed++
			if st.disagreed <= 5 {
				t.Errorf("%s: sluice read %q, the server ran %q\n  sql %q (hex %s)", setting, want, got, q, hex.EncodeToString([]byte(q)))
			}
		}
	}
	return st
}
