package extproc

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// TraceEvent is one chunk Envoy delivered and what the session answered to
// it. Wire traces are for debugging and for replay tests of the protocol
// sessions; they hold raw traffic, so they are off unless asked for.
type TraceEvent struct {
	FromClient bool   `json:"from_client"`
	Data       []byte `json:"data"`
	EOS        bool   `json:"eos,omitempty"`
	ToServer   []byte `json:"to_server,omitempty"`
	ToClient   []byte `json:"to_client,omitempty"`
	Err        string `json:"err,omitempty"`
	// Redacted: ToServer held credentials sluice sent for a brokered login
	// and was left out.
	Redacted bool `json:"redacted,omitempty"`
}

// TraceHeader is a trace file's first line.
type TraceHeader struct {
	Target   string   `json:"target"`
	Protocol string   `json:"protocol"`
	Agent    string   `json:"agent"`
	Groups   []string `json:"groups,omitempty"`
	Database string   `json:"database,omitempty"`
	// Login is the database user sluice logged in as for the agent (a
	// brokered login), whose credentials the trace leaves out.
	Login string `json:"login,omitempty"`
}

type traceFile struct {
	mu  sync.Mutex
	f   *os.File
	enc *json.Encoder
}

func openTrace(dir, id string, h TraceHeader) (*traceFile, error) {
	name := strings.Map(func(r rune) rune {
		if r == '/' || r == '.' || r == 0 {
			return '_'
		}
		return r
	}, id)
	f, err := os.Create(filepath.Join(dir, name+".jsonl"))
	if err != nil {
		return nil, fmt.Errorf("cannot create wire trace: %w", err)
	}
	t := &traceFile{f: f, enc: json.NewEncoder(f)}
	if err := t.enc.Encode(h); err != nil {
		f.Close()
		return nil, fmt.Errorf("cannot write wire trace: %w", err)
	}
	return t, nil
}

func (t *traceFile) write(ev TraceEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	_ = t.enc.Encode(ev)
}

func (t *traceFile) close() {
	if t != nil {
		t.f.Close()
	}
}
