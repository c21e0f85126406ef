// Package audit is sluice's evidence: one event per session opened and
// closed and per statement, hash-chained per session so that an edited,
// dropped or reordered event is detected (Verify), written to sinks (the
// embedded SQLite or PostgreSQL, JSON lines for SIEM ingestion).
package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// Version is the event schema's version (docs/audit-events.schema.json).
const Version = 1

// Event kinds.
const (
	KindSessionOpen  = "session_open"
	KindStatement    = "statement"
	KindSessionClose = "session_close"
)

// Event is one audit record. Fields are omitted when empty.
type Event struct {
	V         int       `json:"v"`
	Session   string    `json:"session"`
	Seq       int64     `json:"seq"` // 1, 2, … within the session
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"`
	Agent     string    `json:"agent"`
	ActingFor string    `json:"acting_for,omitempty"`
	Target    string    `json:"target"`

	// Statements.
	Statement   string   `json:"statement,omitempty"` // literals redacted
	Fingerprint string   `json:"fingerprint,omitempty"`
	Decision    string   `json:"decision,omitempty"` // allow, deny, approval
	Reason      string   `json:"reason,omitempty"`
	Policies    []string `json:"policies,omitempty"`
	Masked      []string `json:"masked_columns,omitempty"`
	Rows        int64    `json:"rows,omitempty"` // returned or affected
	LatencyMS   float64  `json:"latency_ms,omitempty"`
	Error       string   `json:"error,omitempty"`
	// Result is the recording: what the client received, masked values
	// masked, up to 100 rows / 64 KB per statement.
	Result *Result `json:"result,omitempty"`

	// Sessions.
	Groups      []string          `json:"groups,omitempty"`
	Client      map[string]string `json:"client,omitempty"`
	BytesIn     int64             `json:"bytes_from_client,omitempty"`
	BytesOut    int64             `json:"bytes_to_client,omitempty"`
	MaskedCount map[string]int    `json:"masked_values,omitempty"`

	// Prev is the previous event's Hash in the session ("" for the first);
	// Hash covers every other field.
	Prev string `json:"prev"`
	Hash string `json:"hash"`
}

// Result is a recorded result set; a nil row value is SQL NULL.
type Result struct {
	Columns   []string    `json:"columns,omitempty"`
	Rows      [][]*string `json:"rows,omitempty"`
	Truncated bool        `json:"truncated,omitempty"`
}

// digest is the event's hash: SHA-256 of its JSON without Hash.
func (e Event) digest() string {
	e.Hash = ""
	b, _ := json.Marshal(e)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Sink stores events.
type Sink interface {
	Write(e Event) error
}

// Chain numbers and links one session's events.
type Chain struct {
	mu   sync.Mutex
	seq  int64
	last string
	sink Sink
}

// NewChain starts a session's chain.
func NewChain(sink Sink) *Chain { return &Chain{sink: sink} }

// Append seals e into the chain and writes it.
func (c *Chain) Append(e Event) (Event, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	e.V, e.Seq, e.Prev = Version, c.seq, c.last
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	e.Hash = e.digest()
	c.last = e.Hash
	if c.sink == nil {
		return e, nil
	}
	return e, c.sink.Write(e)
}

// Problem is one failed check of Verify.
type Problem struct {
	Session string
	Seq     int64
	Msg     string
}

func (p Problem) String() string {
	return fmt.Sprintf("session %s event %d: %s", p.Session, p.Seq, p.Msg)
}

// Verify checks events in stored order: per session, sequence numbers run
// 1, 2, … without gaps or repeats, each event's Prev is the previous Hash,
// and each Hash matches the event's content.
func Verify(events []Event) []Problem {
	var out []Problem
	type state struct {
		seq  int64
		last string
	}
	sessions := map[string]*state{}
	for _, e := range events {
		st := sessions[e.Session]
		if st == nil {
			st = &state{}
			sessions[e.Session] = st
		}
		switch {
		case e.Hash != e.digest():
			out = append(out, Problem{e.Session, e.Seq, "content does not match its hash (edited)"})
		case e.Seq != st.seq+1:
			msg := fmt.Sprintf("expected event %d here (dropped or reordered)", st.seq+1)
			out = append(out, Problem{e.Session, e.Seq, msg})
		case e.Prev != st.last:
			out = append(out, Problem{e.Session, e.Seq, "does not follow the previous event's hash (dropped or reordered)"})
		}
		st.seq, st.last = e.Seq, e.Hash
	}
	return out
}
