// Package tracetest replays wire traces recorded by `sluice serve
// --trace-dir` against a protocol session, whole, split at every byte and
// one byte per chunk, for the protocol packages' tests.
package tracetest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicedb/sluice/extproc"
	"github.com/sluicedb/sluice/extproc/session"
)

// Trace is a recorded tunnel.
type Trace struct {
	Name   string
	Header extproc.TraceHeader
	Events []extproc.TraceEvent
}

// Load reads the traces matching glob.
func Load(t testing.TB, glob string) []Trace {
	t.Helper()
	files, _ := filepath.Glob(glob)
	if len(files) == 0 {
		t.Fatalf("no traces match %s", glob)
	}
	var out []Trace
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 64<<20)
		tr := Trace{Name: filepath.Base(f)}
		for i := 0; sc.Scan(); i++ {
			var err error
			if i == 0 {
				err = json.Unmarshal(sc.Bytes(), &tr.Header)
			} else {
				var ev extproc.TraceEvent
				err = json.Unmarshal(sc.Bytes(), &ev)
				tr.Events = append(tr.Events, ev)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		fh.Close()
		out = append(out, tr)
	}
	return out
}

// Replay feeds events to s and returns everything it sent, after normalize.
func Replay(t *testing.T, s session.Session, events []extproc.TraceEvent, normalize func([]byte) []byte) (toServer, toClient []byte) {
	t.Helper()
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
		if ev.Redacted {
			// A brokered login's credentials: left out of the trace, and so
			// of the comparison.
			out.ToServer = out.ToServer[:0]
		}
		toServer = append(toServer, out.ToServer...)
		toClient = append(toClient, out.ToClient...)
	}
	return normalize(toServer), normalize(toClient)
}

// Recorded is what sluice sent live.
func Recorded(tr Trace, normalize func([]byte) []byte) (toServer, toClient []byte) {
	for _, ev := range tr.Events {
		toServer = append(toServer, ev.ToServer...)
		toClient = append(toClient, ev.ToClient...)
	}
	return normalize(toServer), normalize(toClient)
}

// SplitAt cuts the event holding the k-th byte of the whole trace in two.
func SplitAt(events []extproc.TraceEvent, k int) []extproc.TraceEvent {
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

// ByteAtATime cuts every event into one-byte chunks.
func ByteAtATime(events []extproc.TraceEvent) []extproc.TraceEvent {
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

// EverySplit replays tr as recorded, at every byte split and byte by byte,
// with a fresh session each time, and fails on any difference.
func EverySplit(t *testing.T, tr Trace, newSession func() session.Session, normalize func([]byte) []byte) {
	t.Helper()
	wantServer, wantClient := Recorded(tr, normalize)
	check := func(what string, events []extproc.TraceEvent) {
		gs, gc := Replay(t, newSession(), events, normalize)
		if !bytes.Equal(gs, wantServer) || !bytes.Equal(gc, wantClient) {
			t.Fatalf("%s: output differs (to server %d/%d bytes, to client %d/%d bytes)", what, len(gs), len(wantServer), len(gc), len(wantClient))
		}
	}
	check("as recorded", tr.Events)
	total := 0
	for _, ev := range tr.Events {
		total += len(ev.Data)
	}
	for k := 1; k < total; k++ {
		check("split", SplitAt(tr.Events, k))
	}
	check("one byte per chunk", ByteAtATime(tr.Events))
	t.Logf("%d events, %d bytes: identical at all %d splits and byte by byte", len(tr.Events), total, total-1)
}

// Feed gives s the client bytes, then the server bytes, in chunks of
// 1..chunk bytes, and fails if an error leaves the session open (closed
// reports whether the session has ended).
func Feed(t *testing.T, s session.Session, client, server []byte, chunk int, closed func() bool) {
	t.Helper()
	if chunk < 0 {
		chunk = -chunk
	}
	var out session.Output
	for _, dir := range []struct {
		b          []byte
		fromClient bool
	}{{client, true}, {server, false}} {
		b := dir.b
		for len(b) > 0 {
			n := min(len(b), chunk%23+1)
			out.Reset()
			var err error
			if dir.fromClient {
				err = s.FromClient(b[:n], &out)
			} else {
				err = s.FromServer(b[:n], &out)
			}
			if err != nil && !closed() {
				t.Fatalf("error %v but session not closed", err)
			}
			b = b[n:]
		}
	}
}
