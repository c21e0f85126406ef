package policy

import (
	goast "go/ast"
	goparser "go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// myOperators are names the TiDB parser gives operators and internal
// forms, never written as a function call.
var myOperators = set(`
and cast leftshift rightshift or ge le eq ne lt gt plus minus bitand bitor mod bitxor div mul bitneg
intdiv xor nulleq unaryplus unaryminus in like ilike case regexp isnull istrue_with_null row setvar
getvar values getparam interval insert_func char_func default_func firstrow not istrue isfalse
`)

// tidbOnlyFunctions are TiDB's own builtins, which MySQL and MariaDB do not
// have: a call to one is a call on a function (refused unless permitted).
var tidbOnlyFunctions = set(`
tidb_bounded_staleness tidb_parse_tso tidb_parse_tso_logical tidb_current_tso tidb_version
tidb_is_ddl_owner tidb_decode_plan tidb_decode_binary_plan tidb_decode_sql_digests tidb_encode_sql_digest
tidb_shard tidb_row_checksum tidb_decode_key tidb_mvcc_info tidb_encode_record_key tidb_encode_index_key
tidb_decode_base64_key format_nano_time current_resource_group vitess_hash json_sum_crc32 sm3
vec_dims vec_l1_distance vec_l2_distance vec_negative_inner_product vec_cosine_distance vec_l2_norm
vec_from_text vec_as_text fts_match_word mask_full mask_partial mask_null mask_date approx_count_distinct
approx_percentile uuid_v4 uuid_v7
`)

// Every builtin the TiDB parser knows (its ast/functions.go constants) is
// classified: computing only (a SELECT may call it), administrative, a
// call that must be permitted (effects on other sessions or state), an
// operator, or TiDB's own.
func TestMySQLBuiltinsClassified(t *testing.T) {
	file, err := goparser.ParseFile(token.NewFileSet(), filepath.Join(tidbAST(t), "functions.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range file.Decls {
		gd, ok := d.(*goast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, sp := range gd.Specs {
			vs := sp.(*goast.ValueSpec)
			if len(vs.Values) != 1 {
				continue
			}
			lit, ok := vs.Values[0].(*goast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				continue
			}
			name, _ := strconv.Unquote(lit.Value)
			if name == "" || strings.ToLower(name) != name || strings.ContainsAny(name, " .") {
				continue
			}
			n++
			_, dangerous := dangerousMyFunctions[name]
			if !safeMyFunctions[name] && !dangerous && !callMyFunctions[name] && !myOperators[name] && !tidbOnlyFunctions[name] {
				t.Errorf("builtin %q is not classified: add it to safeMyFunctions, callMyFunctions or dangerousMyFunctions", name)
			}
		}
	}
	if n < 300 {
		t.Fatalf("read only %d builtins from the parser", n)
	}
	t.Logf("%d builtins classified", n)
}

// Builtins with effects on other sessions are refused to a reader; the
// documented computing ones are not.
func TestMySQLBuiltinCalls(t *testing.T) {
	cat := NewStaticCatalog(1, map[string][]string{"app.t": {"a"}})
	for sql, call := range map[string]bool{
		"SELECT GET_LOCK('x', 10)":                         true,
		"SELECT RELEASE_ALL_LOCKS()":                       true,
		"SELECT BENCHMARK(1000000, MD5('x'))":              true,
		"SELECT NEXTVAL(t)":                                true,
		"SELECT WEIGHT_STRING(a), COLLATION(a) FROM t":     false,
		"SELECT TIME_FORMAT(NOW(), '%H'), RANDOM_BYTES(4)": false,
		"SELECT JSON_ARRAY_APPEND('[]', '$', 1)":           false,
	} {
		a := AnalyzeMySQL(sql, MySQLSession{Database: "app"}, cat)
		if a.Err != nil {
			t.Errorf("%s: %v", sql, a.Err)
			continue
		}
		got := false
		for _, r := range a.Statements[0].Requests {
			got = got || r.Action == "call"
		}
		if got != call {
			t.Errorf("%s: call request %v, want %v", sql, got, call)
		}
	}
}

// MySQL returns a JOIN … USING column once, first, for *: the analysis
// has the result's width, so masks land on the right columns.
func TestMySQLJoinUsingStar(t *testing.T) {
	cat := NewStaticCatalog(1, map[string][]string{
		"app.customers": {"id", "name", "email"}, "app.orders": {"id", "total"},
	})
	for sql, want := range map[string]string{
		"SELECT * FROM customers JOIN orders USING (id)":           "id name email total",
		"SELECT customers.* FROM customers JOIN orders USING (id)": "id name email",
		"SELECT id, name FROM customers JOIN orders USING (id)":    "id name",
		"SELECT * FROM customers NATURAL JOIN orders":              "id name email total",
	} {
		a := AnalyzeMySQL(sql, MySQLSession{Database: "app"}, cat)
		if a.Err != nil {
			t.Errorf("%s: %v", sql, a.Err)
			continue
		}
		if got := outputNamesOf(a.Statements[0]); got != want {
			t.Errorf("%s: %q, want %q", sql, got, want)
		}
	}
}
