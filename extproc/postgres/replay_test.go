package postgres

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/extproc"
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

// Wire traces recorded by `sluice serve --trace-dir` in the end-to-end tests
// (real Envoy, PostgreSQL, psql and pgx): every chunk Envoy delivered and what
// sluice answered. Replaying them must give the same answers however the
// bytes are cut into chunks.

type trace struct {
	header extproc.TraceHeader
	events []extproc.TraceEvent
}

func loadTraces(t *testing.T) map[string]trace {
	t.Helper()
	files, _ := filepath.Glob("testdata/traces/*.jsonl")
	if len(files) == 0 {
		t.Fatal("no traces in testdata/traces")
	}
	out := map[string]trace{}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 64<<20)
		var tr trace
		for i := 0; sc.Scan(); i++ {
			if i == 0 {
				if err := json.Unmarshal(sc.Bytes(), &tr.header); err != nil {
					t.Fatal(err)
				}
				continue
			}
			var ev extproc.TraceEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Fatal(err)
			}
			tr.events = append(tr.events, ev)
		}
		fh.Close()
		out[filepath.Base(f)] = tr
	}
	return out
}

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

// replay feeds events to a new session and returns everything it sent.
func replay(t *testing.T, tr trace, events []extproc.TraceEvent) (toServer, toClient []byte) {
	s := newReplaySession(t, tr.header)
	var out session.Output
	for _, ev := range events {
		out.Reset()
		var err error
		if ev.FromClient {
			err = s.FromClient(ev.Data, &out)
		} else {
			err = s.FromServer(ev.Data, &out)
		}
		if err != nil && ev.Err == "" {
			t.Fatalf("replay error: %v", err)
		}
		toServer = append(toServer, out.ToServer...)
		toClient = append(toClient, out.ToClient...)
	}
	return normalize(toServer), normalize(toClient)
}

func recorded(tr trace) (toServer, toClient []byte) {
	for _, ev := range tr.events {
		toServer = append(toServer, ev.ToServer...)
		toClient = append(toClient, ev.ToClient...)
	}
	return normalize(toServer), normalize(toClient)
}

// splitAt cuts the event holding the k-th byte of the whole trace in two.
func splitAt(events []extproc.TraceEvent, k int) []extproc.TraceEvent {
	out := make([]extproc.TraceEvent, 0, len(events)+1)
	for _, ev := range events {
		if k > 0 && k < len(ev.Data) {
			a, b := ev, ev
			a.Data, a.EOS = ev.Data[:k], false
			b.Data = ev.Data[k:]
			out = append(out, a, b)
		} else {
			out = append(out, ev)
		}
		k -= len(ev.Data)
	}
	return out
}

// byteAtATime cuts every event into one-byte chunks.
func byteAtATime(events []extproc.TraceEvent) []extproc.TraceEvent {
	var out []extproc.TraceEvent
	for _, ev := range events {
		for i := range ev.Data {
			c := ev
			c.Data, c.EOS = ev.Data[i:i+1], ev.EOS && i == len(ev.Data)-1
			out = append(out, c)
		}
		if len(ev.Data) == 0 {
			out = append(out, ev)
		}
	}
	return out
}

func TestReplayRecordedSessionsAtEverySplit(t *testing.T) {
	for name, tr := range loadTraces(t) {
		t.Run(name, func(t *testing.T) {
			wantServer, wantClient := recorded(tr)
			gotServer, gotClient := replay(t, tr, tr.events)
			if !bytes.Equal(gotServer, wantServer) || !bytes.Equal(gotClient, wantClient) {
				t.Fatalf("replay as recorded differs: to server %d/%d bytes, to client %d/%d bytes",
					len(gotServer), len(wantServer), len(gotClient), len(wantClient))
			}
			total := 0
			for _, ev := range tr.events {
				total += len(ev.Data)
			}
			for k := 1; k < total; k++ {
				gs, gc := replay(t, tr, splitAt(tr.events, k))
				if !bytes.Equal(gs, wantServer) || !bytes.Equal(gc, wantClient) {
					t.Fatalf("split at byte %d of %d: output differs", k, total)
				}
			}
			gs, gc := replay(t, tr, byteAtATime(tr.events))
			if !bytes.Equal(gs, wantServer) || !bytes.Equal(gc, wantClient) {
				t.Fatal("one byte per chunk: output differs")
			}
			t.Logf("%d events, %d bytes: identical at all %d splits and byte by byte", len(tr.events), total, total-1)
		})
	}
}

// The traces must exercise what they are kept for.
func TestTracesCoverRefusals(t *testing.T) {
	tr := loadTraces(t)["pgx-batch-middle-refused.jsonl"]
	_, toClient := recorded(tr)
	if !bytes.Contains(toClient, []byte("42501")) || !bytes.Contains(toClient, []byte("no-ddl")) {
		t.Fatal("the batch trace does not hold the refusal")
	}
}
