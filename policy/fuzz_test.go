package policy

import (
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
)

var fuzzCatalog = NewStaticCatalog(1, map[string][]string{
	"public.customers": {"id", "name", "email", "ssn"}, "public.orders": {"id", "customer_id", "total_cents"},
	"audit.customers": {"id"}, "sluice_demo.customers": {"id", "name", "email", "ssn"}, "sluice_demo.orders": {"id", "customer_id"},
})

func FuzzAnalyzePostgres(f *testing.F) {
	for _, s := range []string{
		"SELECT * FROM customers", "WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d",
		"SELECT row_to_json(c) FROM customers c WHERE email LIKE 'a%'", "DROP TABLE a, b",
		"COPY customers FROM PROGRAM 'x'", "WITH RECURSIVE r(n) AS (SELECT 1 UNION SELECT n+1 FROM r) SELECT * FROM r",
		"SELECT (SELECT max(ssn) FROM customers) FROM orders o JOIN customers c USING (id)", "\x00", "SELECT",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		for _, cat := range []Catalog{nil, fuzzCatalog} {
			a := AnalyzePostgres(sql, cat)
			if _, err := pg.Parse(sql); err != nil && a.Err == nil {
				t.Fatalf("%q: PostgreSQL's parser refuses it but the analysis did not", sql)
			}
			if a.Err == nil {
				for _, st := range a.Statements {
					if st.Kind == "" {
						t.Fatalf("%q: statement without a kind", sql)
					}
				}
			}
		}
	})
}

func FuzzAnalyzeMySQL(f *testing.F) {
	for _, s := range []string{
		"SELECT * FROM customers", "SELECT 1 /*! ; DROP TABLE t */", "SELECT 1 /*M! , 2 */",
		"INSERT INTO orders SELECT id, 1 FROM customers", "LOAD DATA LOCAL INFILE 'x' INTO TABLE orders",
		"PREPARE s FROM @q", "SET GLOBAL x = 1", "WITH e AS (SELECT email FROM customers) SELECT * FROM e",
		"UPDATE orders o JOIN customers c ON c.id = o.customer_id SET o.id = 1", "'", "/*M!",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		for _, cat := range []Catalog{nil, fuzzCatalog} {
			a := AnalyzeMySQL(sql, MySQLSession{Database: "sluice_demo"}, cat)
			if a.Err == nil {
				for _, st := range a.Statements {
					if st.Kind == "" {
						t.Fatalf("%q: statement without a kind", sql)
					}
				}
			}
		}
	})
}
