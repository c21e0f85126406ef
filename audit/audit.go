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
	// The guardrails paused the session (or a human did), or a human
	// resumed it.
	KindSessionPaused  = "session_paused"
	KindSessionResumed = "session_resumed"
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
	// By is who paused or resumed the session ("sluice" for a guardrail).
	By string `json:"by,omitempty"`
	// Result is the recording: what the client received, masked values
	// masked, up to 100 rows / 64 KB per statement.
	Result *Result `json:"result,omitempty"`

	// Sessions.
	Groups []string          `json:"groups,omitempty"`
	Client map[string]string `json:"client,omitempty"`
	// Instance names the sluice process that carried the session (see
	// Store.Instances): a session without session_close whose instance no
	// longer runs was cut off.
	Instance    string         `json:"instance,omitempty"`
	BytesIn     int64          `json:"bytes_from_client,omitempty"`
	BytesOut    int64          `json:"bytes_to_client,omitempty"`
	MaskedCount map[string]int `json:"masked_values,omitempty"`

	// Prev is the previous event's Hash in the session ("" for the first);
	// Hash covers every other field.
	Prev string `json:"prev"`
	Hash string `json:"hash"`

	// raw is the sealed event as written (Append) or read (Parse): sinks
	// write it without encoding the event again, and Verify hashes it, so
	// a stored line is checked byte for byte.
	raw []byte
}

// Result is a recorded result set; a nil row value is SQL NULL.
type Result struct {
	Columns   []string    `json:"columns,omitempty"`
	Rows      [][]*string `json:"rows,omitempty"`
	Truncated bool        `json:"truncated,omitempty"`
}

// hashField ends every sealed event (Hash is the last field) but for its
// value.
const hashField = `"hash":"`

// digest is the event's hash: SHA-256 of its JSON with hash set to "".
// A parsed or sealed event is hashed as stored: its line with the hash's
// value removed.
func (e Event) digest() string {
	var b []byte
	if body, ok := e.unsealed(); ok {
		b = body
	} else {
		e.Hash, e.raw = "", nil
		b = e.appendJSON(nil)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// unsealed returns raw with the hash's value removed, when raw ends with
// the hash field.
func (e Event) unsealed() ([]byte, bool) {
	tail := len(e.Hash) + len(`"}`)
	n := len(e.raw) - tail
	if e.raw == nil || n < len(hashField) || string(e.raw[n-len(hashField):n]) != hashField || string(e.raw[n:n+len(e.Hash)]) != e.Hash {
		return nil, false
	}
	b := make([]byte, 0, n+2)
	return append(append(b, e.raw[:n]...), `"}`...), true
}

// seal sets Hash and raw: the event is encoded once, hashed with an empty
// hash, and the hash is spliced into the same bytes.
func (e *Event) seal() {
	e.Hash, e.raw = "", nil
	b := e.appendJSON(make([]byte, 0, 512))
	h := sha256.Sum256(b)
	e.Hash = hex.EncodeToString(h[:])
	b = append(b[:len(b)-len(`"}`)], e.Hash...)
	e.raw = append(b, `"}`...)
}

// JSON returns the event's JSON: as sealed or parsed, else encoded.
func (e Event) JSON() []byte {
	if e.raw != nil {
		return e.raw
	}
	return e.appendJSON(nil)
}

// Parse decodes one stored event, keeping its bytes for Verify.
func Parse(line []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(line, &e); err != nil {
		return Event{}, fmt.Errorf("cannot decode audit event: %w", err)
	}
	e.raw = append([]byte(nil), line...)
	return e, nil
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
	e.seal()
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
