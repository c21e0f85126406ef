package postgres

import (
	"bytes"
	"regexp"
	"testing"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/extproc"
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/extproc/tracetest"
	"github.com/sluicedb/sluice/policy"
)

// Wire traces recorded by `sluice serve --trace-dir` in the end-to-end tests
// (real Envoy, PostgreSQL, psql and pgx): every chunk Envoy delivered and what
// sluice answered. Replaying them must give the same answers however the
// bytes are cut into chunks.

var poisonRE = regexp.MustCompile(`sluice: refused [0-9a-f]{16}`)

func normalize(b []byte) []byte {
	return poisonRE.ReplaceAll(b, []byte("sluice: refused 0000000000000000"))
}

func newReplaySession(t *testing.T, h extproc.TraceHeader) *Session {
	t.Helper()
	set, err := cedar.Default()
	if err != nil {
		t.Fatal(err)
	}
	target := session.Target{Name: h.Target, Protocol: h.Protocol, Database: h.Database}
	auth := policy.NewEngine(set).Session(session.Identity{Subject: h.Agent, Groups: h.Groups}, target)
	return NewSession(Config{Target: target, Authorizer: auth})
}

func TestReplayRecordedSessionsAtEverySplit(t *testing.T) {
	for _, tr := range tracetest.Load(t, "testdata/traces/*.jsonl") {
		t.Run(tr.Name, func(t *testing.T) {
			tracetest.EverySplit(t, tr, func() session.Session { return newReplaySession(t, tr.Header) }, normalize)
		})
	}
}

// The traces must exercise what they are kept for.
func TestTracesCoverRefusals(t *testing.T) {
	for _, tr := range tracetest.Load(t, "testdata/traces/pgx-batch-middle-refused.jsonl") {
		_, toClient := tracetest.Recorded(tr, normalize)
		if !bytes.Contains(toClient, []byte("42501")) || !bytes.Contains(toClient, []byte("no-ddl")) {
			t.Fatal("the batch trace does not hold the refusal")
		}
	}
}
