package policy

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/extproc/session"
)

var demo = session.Target{Name: "demo", Protocol: "postgres", Tags: map[string]string{"env": "dev"}}

func defaultEngine(t testing.TB) *Engine {
	t.Helper()
	set, err := cedar.Default()
	if err != nil {
		t.Fatal(err)
	}
	return NewEngine(set)
}

func TestDecisions(t *testing.T) {
	e := defaultEngine(t)
	reader := e.Session(session.Identity{Subject: "r", Groups: []string{"agents"}}, demo)
	writer := e.Session(session.Identity{Subject: "w", Groups: []string{"agents", "writers"}}, demo)
	migrator := e.Session(session.Identity{Subject: "m", Groups: []string{"agents", "migrators"}}, demo)
	nobody := e.Session(session.Identity{Subject: "n"}, demo)
	for _, tc := range []struct {
		a        *Authorizer
		sql      string
		allow    bool
		policies string
	}{
		{reader, "SELECT * FROM customers", true, "agents-read"},
		{reader, "BEGIN", true, "agents-session"},
		{reader, "DROP TABLE customers", false, "no-ddl"},
		{reader, "DELETE FROM customers", false, ""},
		{reader, "SELECT 1; DELETE FROM customers", false, ""},
		{reader, "SELECT pg_read_file('x')", false, "no-admin"},
		{writer, "DELETE FROM customers WHERE id = 1", true, "writers-write"},
		{writer, "DROP TABLE customers", false, "no-ddl"},
		{migrator, "DROP TABLE customers", true, "migrators-ddl"},
		{migrator, "GRANT ALL ON customers TO x", false, "no-admin"},
		{nobody, "SELECT 1", true, ""},
		{nobody, "SELECT * FROM customers", false, ""},
	} {
		d := tc.a.AuthorizeSQL(tc.sql)
		if d.Allowed() != tc.allow || strings.Join(d.Policies, ",") != tc.policies {
			t.Errorf("%s %q: got %s by [%s] (%s), want allow=%v by [%s]", tc.a.agent.UID, tc.sql, d.Outcome, d.PolicyList(), d.Reason, tc.allow, tc.policies)
		}
	}
	if d := reader.AuthorizeConnect(); !d.Allowed() {
		t.Errorf("agents may not connect: %s", d.Reason)
	}
	if d := nobody.AuthorizeConnect(); d.Allowed() {
		t.Error("an agent in no group may connect")
	}
	if d := reader.AuthorizeSQL("SELEC 1"); d.Allowed() || !d.Unparseable {
		t.Errorf("unparseable SQL: %+v", d)
	}
}

func TestSwapKeepsDecidingWithNewSet(t *testing.T) {
	e := defaultEngine(t)
	a := e.Session(session.Identity{Subject: "r", Groups: []string{"agents"}}, demo)
	if !a.AuthorizeSQL("SELECT * FROM t").Allowed() {
		t.Fatal("read refused")
	}
	set, err := cedar.Load(fstest.MapFS{"p.cedar": {Data: []byte(`@id("nothing") forbid (principal, action, resource);`)}})
	if err != nil {
		t.Fatal(err)
	}
	e.Swap(set)
	if d := a.AuthorizeSQL("SELECT * FROM t"); d.Allowed() || d.PolicyList() != "nothing" {
		t.Fatalf("after swap: %+v", d)
	}
}

func TestEntityTagsReachPolicies(t *testing.T) {
	set, err := cedar.Load(fstest.MapFS{
		"p.cedar": {Data: []byte(`
@id("read-nonsecret") permit (principal, action == Sluice::Action::"select", resource)
  unless { resource.hasTag("secret") };`)},
		"entities.json": {Data: []byte(`[{"uid": {"type": "Sluice::Table", "id": "demo/public.keys"}, "attrs": {}, "parents": [], "tags": {"secret": "yes"}}]`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	a := NewEngine(set).Session(session.Identity{Subject: "r"}, demo)
	if !a.AuthorizeSQL("SELECT * FROM orders").Allowed() {
		t.Error("untagged table refused")
	}
	if a.AuthorizeSQL("SELECT * FROM keys").Allowed() {
		t.Error("secret-tagged table allowed")
	}
}

func BenchmarkAuthorizeJoinCached(b *testing.B) {
	a := defaultEngine(b).Session(session.Identity{Subject: "r", Groups: []string{"agents"}}, demo)
	sql := "SELECT c.name, o.total_cents FROM customers c JOIN orders o ON o.customer_id = c.id WHERE o.placed_at > now() - interval '7 days' ORDER BY o.total_cents DESC LIMIT 10"
	for b.Loop() {
		if !a.AuthorizeSQL(sql).Allowed() {
			b.Fatal("refused")
		}
	}
}
