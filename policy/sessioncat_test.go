package policy

import (
	"maps"
	"testing"
	"testing/fstest"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/extproc/session"
)

// builder may create and fill temporary tables, and feed masked values
// into writes, but reads tagged columns masked.
func builder(t *testing.T) *Authorizer {
	t.Helper()
	set, err := cedar.Load(fstest.MapFS{"p.cedar": {Data: []byte(`
@id("all") permit (principal, action, resource)
when { !(action == Sluice::Action::"read_unmasked") };
@id("unmasked-unless-sensitive")
permit (principal, action == Sluice::Action::"read_unmasked", resource)
unless { resource.hasTag("pii") || resource.hasTag("secret") };
`)}})
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(set)
	e.SetCatalog(demo.Name, fixedCatalog{demoCatalog()})
	return e.Session(session.Identity{Subject: "b", Groups: []string{"builders"}}, demo)
}

// run decides sql and, as the server would confirm it, applies its
// effects and then the ReadyForQuery status.
func run(t *testing.T, a *Authorizer, sql string, status byte) Decision {
	t.Helper()
	d := a.AuthorizeSQL(sql)
	if d.Allowed() {
		for _, es := range d.Effects {
			for _, e := range es {
				a.ApplyEffect(e)
			}
		}
	} else {
		a.ServerError()
	}
	a.ServerReady(status)
	return d
}

func TestSessionTempTables(t *testing.T) {
	a := builder(t)
	// Before it exists: the database's own 42P01.
	if d := a.AuthorizeSQL("SELECT * FROM tmp_mail"); d.Missing == nil {
		t.Fatalf("before creation: %+v", d)
	}
	if d := run(t, a, "CREATE TEMP TABLE tmp_mail AS SELECT id, contact AS email, upper(contact) AS shout FROM contacts", 'I'); !d.Allowed() {
		t.Fatal(d.Reason)
	}
	d := a.AuthorizeSQL("SELECT id, email, shout FROM tmp_mail")
	if !d.Allowed() || d.Tables[0] != "pg_temp.tmp_mail" {
		t.Fatalf("read back: %+v", d)
	}
	m := maskedBy(d)
	t.Logf("masks read back from the temp table: %v", m)
	if m["email"] == "" || m["shout"] == "" || m["id"] != "" {
		t.Fatalf("a temp table from masked columns must stay masked: %v", m)
	}
	// Plain table, then masked values inserted into it: masked when read.
	run(t, a, "CREATE TEMP TABLE tmp_plain (a text, b int)", 'I')
	if m := maskedBy(a.AuthorizeSQL("SELECT a FROM tmp_plain")); m["a"] != "" {
		t.Fatalf("nothing flowed in yet: %v", m)
	}
	run(t, a, "INSERT INTO tmp_plain SELECT contact, id FROM contacts", 'I')
	if m := maskedBy(a.AuthorizeSQL("SELECT a FROM tmp_plain")); m["a"] == "" {
		t.Fatalf("ssn inserted into tmp_plain.a comes back unmasked: %v", m)
	}
	// All in one string: the relation is known to the statements after it.
	d = a.AuthorizeSQL("CREATE TEMP TABLE tmp_s AS SELECT contact AS email FROM contacts; SELECT email FROM tmp_s")
	if !d.Allowed() || len(d.Masked) != 2 || len(d.Masked[1]) != 1 {
		t.Fatalf("same string: %+v", d)
	}
	d = a.AuthorizeSQL("CREATE TEMP TABLE tmp_v (x text); INSERT INTO tmp_v SELECT contact FROM contacts; SELECT x FROM tmp_v")
	if !d.Allowed() || len(d.Masked) != 3 || len(d.Masked[2]) != 1 {
		t.Fatalf("created, fed and read in one string: %+v", d)
	}
	// A temp view over a masked column, in one string.
	d = a.AuthorizeSQL("CREATE TEMP VIEW tv AS SELECT contact AS e FROM contacts; SELECT e FROM tv")
	if !d.Allowed() || len(d.Masked[1]) != 1 {
		t.Fatalf("temp view in one string: %+v", d)
	}
	// A transaction that fails undoes its temp tables.
	run(t, a, "BEGIN", 'T')
	run(t, a, "CREATE TEMP TABLE tmp_tx (a int)", 'T')
	if d := a.AuthorizeSQL("SELECT a FROM tmp_tx"); !d.Allowed() {
		t.Fatalf("inside its transaction: %s", d.Reason)
	}
	a.ServerError()
	a.ServerReady('E')
	a.ServerCommandTag("ROLLBACK")
	a.ServerReady('I')
	if d := a.AuthorizeSQL("SELECT a FROM tmp_tx"); d.Missing == nil {
		t.Fatalf("after the rollback: %+v", d)
	}
	// A savepoint rolled back: what changed since the transaction began
	// is uncertain, and refused by name.
	run(t, a, "BEGIN", 'T')
	run(t, a, "CREATE TEMP TABLE tmp_sp (a int)", 'T')
	a.ServerCommandTag("ROLLBACK")
	a.ServerReady('T')
	if d := a.AuthorizeSQL("SELECT a FROM tmp_sp"); d.Allowed() || d.Missing != nil {
		t.Fatalf("after ROLLBACK TO SAVEPOINT: %+v", d)
	}
	run(t, a, "COMMIT", 'I')
	// DROP, confirmed, forgets it; DISCARD TEMP forgets all.
	run(t, a, "DROP TABLE tmp_plain", 'I')
	if d := a.AuthorizeSQL("SELECT a FROM tmp_plain"); d.Missing == nil {
		t.Fatalf("after DROP: %+v", d)
	}
	run(t, a, "DISCARD TEMP", 'I')
	if d := a.AuthorizeSQL("SELECT email FROM tmp_mail"); d.Missing == nil {
		t.Fatalf("after DISCARD TEMP: %+v", d)
	}
	// A temp table may not shadow an existing relation.
	if d := a.AuthorizeSQL("CREATE TEMP TABLE customers (id int)"); d.Allowed() {
		t.Fatal("a temp table shadowing customers was allowed")
	}
}

// Two sessions never see each other's temporary tables, though analyses
// are cached across sessions.
func TestSessionTempTablesIsolated(t *testing.T) {
	a := builder(t)
	b := a.engine.Session(session.Identity{Subject: "c", Groups: []string{"builders"}}, demo)
	run(t, a, "CREATE TEMP TABLE mine (email text)", 'I')
	if d := b.AuthorizeSQL("SELECT email FROM mine"); d.Missing == nil {
		t.Fatalf("another session's temp table resolved: %+v", d)
	}
	run(t, b, "CREATE TEMP TABLE mine AS SELECT contact AS email FROM contacts", 'I')
	if m := maskedBy(a.AuthorizeSQL("SELECT email FROM mine")); m["email"] != "" {
		t.Fatalf("session a's plain table masked by b's lineage: %v", m)
	}
	if m := maskedBy(b.AuthorizeSQL("SELECT email FROM mine")); m["email"] == "" {
		t.Fatalf("session b's table from contacts.contact not masked: %v", m)
	}
}

// MySQL temporary tables: known once the server's OK confirms them, with
// the lineage of what filled them; never rolled back (MySQL's temporary
// table DDL is not transactional).
func TestSessionTempTablesMySQL(t *testing.T) {
	set, err := cedar.Load(fstest.MapFS{"p.cedar": {Data: []byte(`
@id("all") permit (principal, action, resource)
when { !(action == Sluice::Action::"read_unmasked") };
@id("unmasked-unless-sensitive")
permit (principal, action == Sluice::Action::"read_unmasked", resource)
unless { resource.hasTag("pii") };
`)}})
	if err != nil {
		t.Fatal(err)
	}
	target := session.Target{Name: "my", Protocol: "mysql", Database: "app"}
	cat := NewStaticCatalog(3, map[string][]string{"app.contacts": {"id", "contact"}})
	cat.Tags = map[string]map[string]string{"app.contacts.contact": {"pii": "email"}}
	e := NewEngine(set)
	e.SetCatalog(target.Name, fixedCatalog{cat})
	a := e.Session(session.Identity{Subject: "b", Groups: []string{"builders"}}, target)
	apply := func(sql string) Decision {
		t.Helper()
		d := a.AuthorizeSQL(sql)
		if !d.Allowed() {
			t.Fatalf("%s: %s", sql, d.Reason)
		}
		for _, es := range d.Effects {
			for _, e := range es {
				a.ApplyEffect(e)
			}
		}
		return d
	}
	if d := a.AuthorizeSQL("SELECT c FROM tmp_c"); d.Missing == nil {
		t.Fatalf("before: %+v", d)
	}
	apply("CREATE TEMPORARY TABLE tmp_c AS SELECT contact AS c FROM contacts")
	if m := maskedBy(a.AuthorizeSQL("SELECT c FROM tmp_c")); m["c"] == "" {
		t.Fatalf("temp table from a masked column unmasked: %v", m)
	}
	apply("CREATE TEMPORARY TABLE tmp_p (x text)")
	apply("INSERT INTO tmp_p SELECT contact FROM contacts")
	if m := maskedBy(a.AuthorizeSQL("SELECT x FROM tmp_p")); m["x"] == "" {
		t.Fatalf("masked values inserted into a temp table come back unmasked: %v", m)
	}
	d := a.AuthorizeSQL("CREATE TEMPORARY TABLE tmp_s SELECT contact FROM contacts; SELECT contact FROM tmp_s")
	if !d.Allowed() || len(d.Masked[1]) != 1 {
		t.Fatalf("one string: %+v", d)
	}
	apply("DROP TEMPORARY TABLE tmp_c")
	if d := a.AuthorizeSQL("SELECT c FROM tmp_c"); d.Missing == nil {
		t.Fatalf("after DROP: %+v", d)
	}
	apply("CREATE TEMPORARY TABLE tmp_q AS SELECT contact FROM contacts")
	apply("RENAME TABLE tmp_q TO contacts")
	if d := a.AuthorizeSQL("SELECT contact FROM contacts"); d.Allowed() {
		t.Fatalf("a temp table renamed like contacts read as the catalog's: %+v", d)
	}
	apply("CREATE TEMPORARY TABLE tmp_z (a int)")
	apply("ALTER TABLE tmp_z RENAME TO zz")
	if d := a.AuthorizeSQL("SELECT a FROM zz"); d.Allowed() {
		t.Fatalf("renamed with ALTER: %+v", d)
	}
	a.ApplyEffect(Effect{Kind: EffectDiscardTemp}) // COM_RESET_CONNECTION
	if d := a.AuthorizeSQL("SELECT x FROM tmp_p"); d.Missing == nil {
		t.Fatalf("after a connection reset: %+v", d)
	}
}

// A temporary table renamed like a catalog table would stand in for it
// (the server finds the temporary one first): statements naming it are
// refused, in both dialects.
func TestSessionTempTableRenamedLikeACatalogTable(t *testing.T) {
	a := builder(t)
	run(t, a, "CREATE TEMP TABLE tmp_r AS SELECT contact FROM contacts", 'I')
	if d := run(t, a, "ALTER TABLE tmp_r RENAME TO orders", 'I'); !d.Allowed() {
		t.Fatal(d.Reason)
	}
	if d := a.AuthorizeSQL("SELECT * FROM orders"); d.Allowed() {
		t.Fatalf("orders read as the catalog's while a renamed temp table stands in for it: %+v", d)
	}
	if d := a.AuthorizeSQL("SELECT * FROM public.orders"); !d.Allowed() {
		t.Fatalf("the catalog's orders, qualified: %s", d.Reason)
	}
}

// Relations created or altered in an open transaction are invisible to the
// catalog reader until it commits: the session follows them until then.
func TestSessionRelationsInTransaction(t *testing.T) {
	a := builder(t)
	run(t, a, "BEGIN", 'T')
	run(t, a, "CREATE TABLE canary (id text PRIMARY KEY)", 'T')
	if d := a.AuthorizeSQL("SELECT * FROM canary"); !d.Allowed() {
		t.Fatalf("a table created in the open transaction: %s", d.Reason)
	}
	run(t, a, "ALTER TABLE contacts ADD COLUMN note text", 'T')
	if d := a.AuthorizeSQL("SELECT note, contact FROM contacts"); !d.Allowed() || maskedBy(d)["contact"] == "" {
		t.Fatalf("a column added in the open transaction: %+v", d)
	}
	run(t, a, "COMMIT", 'I')
	// Committed: the catalog is the source again (this test's does not
	// change, so canary is gone from sluice's view).
	if d := a.AuthorizeSQL("SELECT * FROM canary"); d.Missing == nil {
		t.Fatalf("after commit the session still follows canary: %+v", d)
	}
	// A temp table's columns through ALTER.
	run(t, a, "CREATE TEMP TABLE to_change (name text, age int)", 'I')
	run(t, a, "ALTER TABLE to_change ALTER COLUMN age TYPE float4", 'I')
	run(t, a, "ALTER TABLE to_change ADD COLUMN extra int, DROP COLUMN name", 'I')
	if d := a.AuthorizeSQL("SELECT age, extra FROM to_change"); !d.Allowed() {
		t.Fatalf("after ALTER: %s", d.Reason)
	}
	if d := a.AuthorizeSQL("SELECT name FROM to_change"); d.Allowed() {
		t.Fatal("a dropped column resolved")
	}
	// ALTER TYPE of a composite type is not about a relation.
	if d := run(t, a, "CREATE TYPE compositetype AS (attr1 int, attr2 int); ALTER TYPE compositetype DROP ATTRIBUTE attr1", 'I'); !d.Allowed() {
		t.Fatalf("ALTER TYPE … DROP ATTRIBUTE: %s", d.Reason)
	}
}

// The strictest tag wins: a column tagged secret is redacted whatever its
// kind of personal data; an explicit mask tag still decides.
func TestStrictestTagWins(t *testing.T) {
	set, err := cedar.Load(fstest.MapFS{
		"p.cedar": {Data: []byte(`@id("read") permit (principal, action, resource) when { !(action == Sluice::Action::"read_unmasked") };`)},
		"e.entities.json": {Data: []byte(`[
 {"uid": {"type": "Sluice::Column", "id": "demo/public.customers.ssn"}, "attrs": {}, "parents": [], "tags": {"pii": "ssn"}},
 {"uid": {"type": "Sluice::Column", "id": "demo/public.customers.email"}, "attrs": {}, "parents": [], "tags": {"pii": "email"}},
 {"uid": {"type": "Sluice::Column", "id": "demo/public.customers.name"}, "attrs": {}, "parents": [], "tags": {"pii": "ssn", "secret": "yes"}},
 {"uid": {"type": "Sluice::Column", "id": "demo/public.orders.total_cents"}, "attrs": {}, "parents": [], "tags": {"pii": "ssn", "secret": "yes", "mask": "partial:2"}}
]`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(set)
	e.SetCatalog(demo.Name, fixedCatalog{demoCatalog()})
	a := e.Session(session.Identity{Subject: "r", Groups: []string{"readers"}}, demo)
	for sql, want := range map[string]map[string]string{
		"SELECT ssn, email, name FROM customers": {"ssn": "partial:4", "email": "email", "name": "redact"},
		"SELECT total_cents FROM orders":         {"total_cents": "partial:2"},
	} {
		d := a.AuthorizeSQL(sql)
		if !d.Allowed() {
			t.Fatalf("%s: %s", sql, d.Reason)
		}
		if got := maskedBy(d); !maps.Equal(got, want) {
			t.Errorf("%s: strategies %v, want %v", sql, got, want)
		}
	}
}

// Temporary tables dropped without naming them (their schema, or
// everything the role owns) are forgotten too: otherwise sluice would
// resolve a name to a table the server no longer has, while the server
// reads another.
func TestSessionTempTablesDroppedWholesale(t *testing.T) {
	for _, drop := range []string{"DROP SCHEMA pg_temp_3 CASCADE", "DROP OWNED BY CURRENT_USER"} {
		a := builder(t)
		run(t, a, "CREATE TEMP TABLE gone (a int)", 'I')
		if d := run(t, a, drop, 'I'); !d.Allowed() {
			t.Fatalf("%s: %s", drop, d.Reason)
		}
		if d := a.AuthorizeSQL("SELECT a FROM gone"); d.Missing == nil {
			t.Errorf("after %s the temp table is still followed: %+v", drop, d)
		}
	}
}
