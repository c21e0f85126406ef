package policy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sluicedb/sluice/extproc/session"
)

// planString renders a masking plan: strategy, then the parts' plans in
// braces; "-" is a part shown as it is.
func planString(m MaskedColumn) string {
	s := m.Strategy
	if s == "" {
		s = "-"
	}
	if m.Shape == ShapeJSON && len(m.Parts) == 0 {
		s += "(json)"
	}
	if len(m.Parts) == 0 {
		return s
	}
	var parts []string
	for _, p := range m.Parts {
		k := p.Name
		if k != "" {
			k += ":"
		}
		parts = append(parts, k+planString(p))
	}
	return fmt.Sprintf("%s %s{%s}", s, m.Shape, strings.Join(parts, " "))
}

func TestStructuredOutputsMaskInside(t *testing.T) {
	a := analyst(t, demo)
	for _, tc := range []struct{ sql, want string }{
		{"SELECT 1", ""},
		{"SELECT row_to_json(c) FROM customers c", "0 redact json object{id:- name:- email:email ssn:partial:4}"},
		{"SELECT to_jsonb(customers.*) FROM customers", "0 redact json object{id:- name:- email:email ssn:partial:4}"},
		{"SELECT json_agg(c) FROM customers c", "0 redact json array{redact json object{id:- name:- email:email ssn:partial:4}}"},
		{"SELECT c FROM customers c", "0 redact record{id:- name:- email:email ssn:partial:4}"},
		{"SELECT ROW(name, email) FROM customers", "0 redact record{f1:- f2:email}"},
		{"SELECT ARRAY[email, ssn] FROM customers", "0 redact array{email partial:4}"},
		{"SELECT array_agg(email) FROM customers", "0 redact array{email}"},
		{"SELECT json_build_object('e', email, 'n', name, 'id', id) FROM customers", "0 redact json object{e:email n:- id:-}"},
		{"SELECT json_object_agg(name, email) FROM customers", "0 redact json map{email}"},
		{"SELECT json_object_agg(email, name) FROM customers", "0 redact(json)"},
		{"SELECT json_agg(email ORDER BY ssn) FROM customers", "0 redact(json)"},
		{"SELECT json_build_object('n', name, 'e', email) FROM customers UNION ALL SELECT json_build_object('n', email, 'e', name) FROM customers", "0 redact json object{n:email e:email}"},
		{"SELECT j FROM (SELECT row_to_json(c) AS j FROM customers c) s", "0 redact json object{id:- name:- email:email ssn:partial:4}"},
		{"SELECT to_json(email) FROM customers", "0 redact json{to_json:email}"},
		{"SELECT json_build_object('a', email, 'a', name) FROM customers", "0 redact json object{a:email}"},
		{"SELECT row_to_json(c)::text FROM customers c", "0 redact json object{id:- name:- email:email ssn:partial:4}"},
		{"SELECT (SELECT json_agg(c) FROM customers c)", "0 redact json array{redact json object{id:- name:- email:email ssn:partial:4}}"},
		{"SELECT json_build_object(name, email) FROM customers", "0 redact(json)"},
	} {
		d := a.AuthorizeSQL(tc.sql)
		if !d.Allowed() {
			t.Errorf("%s: refused: %s", tc.sql, d.Reason)
			continue
		}
		var got []string
		for _, st := range d.Masked {
			for _, m := range st {
				got = append(got, fmt.Sprintf("%d %s", m.Index, planString(m)))
			}
		}
		if g := strings.Join(got, "; "); g != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.sql, g, tc.want)
		}
	}
}

func TestStructuredOutputsMaskInsideMySQL(t *testing.T) {
	e := defaultEngine(t)
	cat := NewStaticCatalog(3, map[string][]string{"shop.customers": {"id", "name", "email"}})
	cat.Tags = map[string]map[string]string{"shop.customers.email": {"pii": "email"}}
	e.SetCatalog(mysqlDemo.Name, fixedCatalog{cat})
	a := e.Session(session.Identity{Subject: "a", Groups: []string{"analysts"}}, mysqlDemo)
	for _, tc := range []struct{ sql, want string }{
		{"SELECT JSON_OBJECT('id', id, 'e', email) FROM customers", "0 redact json object{id:- e:email}"},
		{"SELECT JSON_ARRAYAGG(JSON_OBJECT('id', id, 'e', email)) FROM customers", "0 redact json array{redact json object{id:- e:email}}"},
		{"SELECT JSON_OBJECTAGG(name, email) FROM customers", "0 redact json map{email}"},
		{"SELECT JSON_OBJECTAGG(email, name) FROM customers", "0 redact(json)"},
		{"SELECT JSON_ARRAY(name, email) FROM customers", "0 redact json array{- email}"},
		{"SELECT j FROM (SELECT JSON_OBJECT('e', email) AS j FROM customers) s", "0 redact json object{e:email}"},
		{"SELECT JSON_OBJECT('n', name, 'e', email) FROM customers UNION ALL SELECT JSON_OBJECT('n', email, 'e', name) FROM customers", "0 redact json object{n:email e:email}"},
		{"SELECT JSON_EXTRACT(JSON_OBJECT('e', email), '$.e') FROM customers", "0 redact(json)"},
	} {
		d := a.AuthorizeSQL(tc.sql)
		if !d.Allowed() {
			t.Errorf("%s: refused: %s", tc.sql, d.Reason)
			continue
		}
		var got []string
		for _, st := range d.Masked {
			for _, m := range st {
				got = append(got, fmt.Sprintf("%d %s", m.Index, planString(m)))
			}
		}
		if g := strings.Join(got, "; "); g != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.sql, g, tc.want)
		}
	}
}
