package mysql

import (
	"bytes"
	"testing"
	"time"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/extproc/tracetest"
	"github.com/sluicedb/sluice/guard"
	"github.com/sluicedb/sluice/mask"
	"github.com/sluicedb/sluice/policy"
)

type staticCatalog struct{ c policy.Catalog }

func (s staticCatalog) Current() policy.Catalog               { return s.c }
func (s staticCatalog) RefreshAfter(time.Time) policy.Catalog { return s.c }

var demoCatalog = policy.NewStaticCatalog(1, map[string][]string{
	"sluice_demo.customers": {"id", "name", "email", "ssn"},
	"sluice_demo.orders":    {"id", "customer_id", "total_cents", "placed_at"},
})

func newAuthorizer(t testing.TB, h map[string]string, groups []string) *policy.Authorizer {
	set, err := cedar.Default()
	if err != nil {
		t.Fatal(err)
	}
	e := policy.NewEngine(set)
	e.SetCatalog(h["target"], staticCatalog{demoCatalog})
	return e.Session(session.Identity{Subject: h["agent"], Groups: groups},
		session.Target{Name: h["target"], Protocol: "mysql", Database: h["database"]})
}

// Traces recorded in the end-to-end tests (mysql client, go-sql-driver with
// and without interpolateParams, against MariaDB through the real Envoy).
func TestReplayRecordedSessionsAtEverySplit(t *testing.T) {
	for _, tr := range tracetest.Load(t, "testdata/traces/*.jsonl") {
		t.Run(tr.Name, func(t *testing.T) {
			h := map[string]string{"target": tr.Header.Target, "agent": tr.Header.Agent, "database": tr.Header.Database}
			// Recorded under the demo's guardrails: a one-minute statement timeout.
			target := session.Target{Name: tr.Header.Target, Protocol: "mysql", Database: tr.Header.Database,
				Guardrails: guard.Limits{StatementTimeout: time.Minute}}
			if tr.Header.Login != "" {
				// The recorded proof was left out; any password replays the
				// same exchange.
				target.Login = &session.Login{User: tr.Header.Login, Password: "replay"}
			}
			tracetest.EverySplit(t, tr, func() session.Session {
				return NewSession(Config{Target: target, Authorizer: newAuthorizer(t, h, tr.Header.Groups), Masker: mask.New(nil)})
			}, func(b []byte) []byte { return b })
		})
	}
}

func TestTracesCoverRefusalsAndMasking(t *testing.T) {
	for _, tr := range tracetest.Load(t, "testdata/traces/mysql-cli-refusal.jsonl") {
		_, toClient := tracetest.Recorded(tr, func(b []byte) []byte { return b })
		for _, want := range []string{"42000", "no-ddl", "c***@example.com"} {
			if !bytes.Contains(toClient, []byte(want)) {
				t.Errorf("the trace lacks %q", want)
			}
		}
	}
}
