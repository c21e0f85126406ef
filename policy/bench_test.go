package policy

import (
	"fmt"
	"strings"
	"testing"
	"testing/fstest"

	cedargo "github.com/cedar-policy/cedar-go"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/extproc/session"
)

// A 200-character join, as an agent would send it.
const benchJoin = "SELECT c.id, c.name, o.total_cents, o.placed_at FROM customers c JOIN orders o ON o.customer_id = c.id " +
	"WHERE o.placed_at > now() - interval '7 days' AND o.total_cents > 1000 ORDER BY o.total_cents DESC LIMIT 20"

var benchCatalog = NewStaticCatalog(1, map[string][]string{
	"public.customers": {"id", "name", "email", "ssn"},
	"public.orders":    {"id", "customer_id", "total_cents", "placed_at"},
})

// policySet returns the default policies plus n-9 policies for other teams,
// so the default set has ~10 and the large one ~1,000.
func policySet(b *testing.B, n int) *cedar.Set {
	b.Helper()
	def, err := cedar.Default()
	if err != nil {
		b.Fatal(err)
	}
	files := fstest.MapFS{}
	var sb strings.Builder
	for _, id := range def.IDs {
		sb.Write(def.Policies.Get(cedarID(id)).MarshalCedar())
		sb.WriteString("\n")
	}
	for i := len(def.IDs); i < n; i++ {
		fmt.Fprintf(&sb, "@id(\"team-%d\")\npermit (principal in Sluice::Group::\"team-%d\", action in [Sluice::Action::\"read\", Sluice::Action::\"write\"], resource in Sluice::Schema::\"demo/team%d\")\nwhen { context.statement.kind != \"truncate\" };\n", i, i, i)
	}
	files["p.cedar"] = &fstest.MapFile{Data: []byte(sb.String())}
	set, err := cedar.Load(files)
	if err != nil {
		b.Fatal(err)
	}
	if len(set.IDs) != n {
		b.Fatalf("%d policies, want %d", len(set.IDs), n)
	}
	return set
}

func benchAuthorizer(b *testing.B, n int) *Authorizer {
	e := NewEngine(policySet(b, n))
	e.SetCatalog("demo", staticSource{benchCatalog})
	return e.Session(session.Identity{Subject: "ana", Groups: []string{"analysts"}}, session.Target{Name: "demo", Protocol: "postgres"})
}

func BenchmarkDecideJoin(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("policies=%d/cached", n), func(b *testing.B) {
			a := benchAuthorizer(b, n)
			for b.Loop() {
				if d := a.AuthorizeSQL(benchJoin); !d.Allowed() {
					b.Fatal(d.Reason)
				}
			}
		})
		b.Run(fmt.Sprintf("policies=%d/analysis-cached-decision-evaluated", n), func(b *testing.B) {
			a := benchAuthorizer(b, n)
			for b.Loop() {
				if d := a.authorizeSQL(benchJoin); !d.Allowed() {
					b.Fatal(d.Reason)
				}
			}
		})
		b.Run(fmt.Sprintf("policies=%d/cold", n), func(b *testing.B) {
			a := benchAuthorizer(b, n)
			i := 0
			for b.Loop() {
				// A distinct text each time: parsed and analyzed afresh.
				i++
				if d := a.AuthorizeSQL(fmt.Sprintf("%s /* %d */", benchJoin, i)); !d.Allowed() {
					b.Fatal(d.Reason)
				}
			}
		})
	}
}

func cedarID(id string) cedargo.PolicyID { return cedargo.PolicyID(id) }
