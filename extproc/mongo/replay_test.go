package mongo

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/devstack"
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/extproc/tracetest"
	"github.com/sluicedb/sluice/guard"
	"github.com/sluicedb/sluice/mask"
	"github.com/sluicedb/sluice/policy"
)

// e2ePolicy is the end-to-end stack's extra policy the traces ran under.
const e2ePolicy = `@id("mongo-vault-closed")
forbid (principal, action, resource in Sluice::Table::"demo-mongo/sluice_demo.vault");`

// recordedNonce is the client nonce of the trace's SCRAM login: the server's
// first reply echoes it (r=<client nonce><server nonce>), so a replay can
// send the same one and the recorded server messages verify.
func recordedNonce(t *testing.T, tr tracetest.Trace) func() string {
	for _, ev := range tr.Events {
		if ev.FromClient {
			continue
		}
		var f Framer
		nonce := ""
		_ = f.Feed(ev.Data, func(m Message) error {
			msg, err := ParseMsg(m)
			if err != nil || nonce != "" {
				return err
			}
			if _, p, ok := msg.Body.Lookup("payload").BinaryOK(); ok {
				for _, kv := range strings.Split(string(p), ",") {
					if v, ok := strings.CutPrefix(kv, "r="); ok && len(v) > 32 {
						nonce = v[:32] // xdg-go/scram: 24 random bytes, base64
					}
				}
			}
			return nil
		})
		return func() string { return nonce }
	}
	t.Fatal("no server message in the trace")
	return nil
}

// Traces recorded in the end-to-end tests (pymongo and the Go driver
// through the real Envoy to FerretDB, sluice logging in with SCRAM): each
// replays identically, whole, at every byte split and byte by byte.
func TestReplayRecordedSessionsAtEverySplit(t *testing.T) {
	dir := t.TempDir()
	if err := cedar.WriteDefaults(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "e2e.cedar"), []byte(e2ePolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := cedar.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	engine := policy.NewEngine(set)
	for _, tr := range tracetest.Load(t, "testdata/traces/*.jsonl") {
		t.Run(tr.Name, func(t *testing.T) {
			// Recorded under the demo's guardrails and login.
			target := session.Target{Name: tr.Header.Target, Protocol: "mongodb", Database: tr.Header.Database,
				Guardrails: guard.Limits{StatementTimeout: time.Minute, MaxRows: 100000},
				Login:      &session.Login{User: tr.Header.Login, Password: devstack.AgentDBPass}}
			nonce := recordedNonce(t, tr)
			tracetest.EverySplit(t, tr, func() session.Session {
				auth := engine.Session(session.Identity{Subject: tr.Header.Agent, Groups: tr.Header.Groups}, target)
				return NewSession(Config{Target: target, Decider: auth, Masker: mask.New(nil), nonce: nonce})
			}, func(b []byte) []byte { return b })
		})
	}
}

// The traces hold what they are kept for: refusals answered in place,
// masked documents across getMores, no real value.
func TestTracesCoverRefusalsAndMasking(t *testing.T) {
	for name, wants := range map[string][]string{
		"pymongo-refusals.jsonl": {"no-unbounded-delete", "no-ddl", "mongo-vault-closed", "fooBarCommand"},
		"pymongo-masking.jsonl":  {"getMore", "nextBatch", "c***@example.com", "***************0009"},
	} {
		tr := tracetest.Load(t, "testdata/traces/"+name)[0]
		toServer, toClient := tracetest.Recorded(tr, func(b []byte) []byte { return b })
		all := append(append([]byte(nil), toServer...), toClient...)
		for _, w := range wants {
			if !bytes.Contains(all, []byte(w)) {
				t.Errorf("%s lacks %q", name, w)
			}
		}
		for _, real := range []string{"customer1@", "001-45-6789", "4111 1111 1111"} {
			if bytes.Contains(toClient, []byte(real)) {
				t.Errorf("%s: %q reached the client", name, real)
			}
		}
	}
}
