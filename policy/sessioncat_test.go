package policy

import (
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
