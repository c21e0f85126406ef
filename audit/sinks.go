package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/sluicedb/sluice/sqlstore"
)

// JSONLines writes one JSON event per line (SIEM ingestion: a file or stdout).
type JSONLines struct {
	mu sync.Mutex
	w  io.Writer
}

// NewJSONLines returns a sink writing to w.
func NewJSONLines(w io.Writer) *JSONLines { return &JSONLines{w: w} }

// Write implements Sink.
func (j *JSONLines) Write(e Event) error {
	b := e.JSON()
	j.mu.Lock()
	defer j.mu.Unlock()
	line := make([]byte, 0, len(b)+1)
	_, err := j.w.Write(append(append(line, b...), '\n'))
	return err
}

// BatchWriter is a sink that writes several events at once (one
// transaction for a store).
type BatchWriter interface {
	WriteBatch(es []Event) error
}

func writeBatch(s Sink, es []Event) error {
	if b, ok := s.(BatchWriter); ok {
		return b.WriteBatch(es)
	}
	var errs []error
	for _, e := range es {
		errs = append(errs, s.Write(e))
	}
	return errors.Join(errs...)
}

// Multi writes to every sink; the first error is returned after all ran.
type Multi []Sink

// Write implements Sink.
func (m Multi) Write(e Event) error { return m.WriteBatch([]Event{e}) }

// WriteBatch implements BatchWriter.
func (m Multi) WriteBatch(es []Event) error {
	var errs []error
	for _, s := range m {
		errs = append(errs, writeBatch(s, es))
	}
	return errors.Join(errs...)
}

// Store keeps events in SQLite or PostgreSQL, in insertion order.
type Store struct {
	db *sqlstore.DB
}

// OpenStore opens the store at url (postgres:// or a SQLite path).
func OpenStore(ctx context.Context, url string) (*Store, error) {
	db, err := sqlstore.Open(url)
	if err != nil {
		return nil, fmt.Errorf("cannot open audit store: %w", err)
	}
	s := &Store{db: db}
	// A rowid key: events are never deleted, so it only grows, without
	// AUTOINCREMENT's per-row bookkeeping.
	serial := "INTEGER PRIMARY KEY"
	if db.Postgres {
		serial = "BIGSERIAL PRIMARY KEY"
	}
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS sluice_audit (
  id `+serial+`,
  session TEXT NOT NULL,
  seq BIGINT NOT NULL,
  kind TEXT NOT NULL,
  event TEXT NOT NULL
)`); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("cannot create audit table: %w", err)
	}
	return s, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

// Write implements Sink.
func (s *Store) Write(e Event) error { return s.WriteBatch([]Event{e}) }

// insertRows bounds one INSERT's rows (SQLite allows 32766 parameters).
const insertRows = 128

// WriteBatch implements BatchWriter: one transaction for the batch, one
// multi-row INSERT per 128 events.
func (s *Store) WriteBatch(es []Event) error {
	tx, err := s.db.Begin()
	if err != nil {
		return fmt.Errorf("cannot store audit events: %w", err)
	}
	defer tx.Rollback()
	var q strings.Builder
	args := make([]any, 0, 4*min(len(es), insertRows))
	for len(es) > 0 {
		chunk := es[:min(len(es), insertRows)]
		es = es[len(chunk):]
		q.Reset()
		args = args[:0]
		q.WriteString("INSERT INTO sluice_audit (session, seq, kind, event) VALUES ")
		for i, e := range chunk {
			b := e.JSON()
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteString("(?, ?, ?, ?)")
			args = append(args, e.Session, e.Seq, e.Kind, string(b))
		}
		if _, err := tx.Exec(s.db.Rebind(q.String()), args...); err != nil {
			return fmt.Errorf("cannot store audit events: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cannot store audit events: %w", err)
	}
	return nil
}

// Events returns every stored event in insertion order (session "" for all).
func (s *Store) Events(ctx context.Context, session string) ([]Event, error) {
	rows, err := s.db.QueryContext(ctx, s.db.Rebind("SELECT event FROM sluice_audit WHERE (? = '' OR session = ?) ORDER BY id"), session, session)
	if err != nil {
		return nil, fmt.Errorf("cannot read audit events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			return nil, err
		}
		e, err := Parse(raw)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// DB exposes the database, for tests that tamper with it.
func (s *Store) DB() *sql.DB { return s.db.DB }

// Buffered writes to a sink from its own goroutine, so that a slow store
// never stalls the data path. When the buffer is full or the sink fails,
// Healthy reports false until a write succeeds again: sluice then refuses
// new sessions (fail closed) unless configured to fail open.
type Buffered struct {
	batcher *Batcher[Event]
	mu      sync.Mutex
	lastErr error
	dropped int64
}

// NewBuffered starts the writer with room for size events. Events are
// gathered for 20 ms, so a busy gateway pays one commit per batch rather
// than one per statement.
func NewBuffered(sink Sink, size int) *Buffered {
	b := &Buffered{}
	b.batcher = NewBatcher(size, 20*time.Millisecond, func(es []Event) {
		for len(es) > 0 {
			n := min(len(es), 512)
			err := writeBatch(sink, es[:n])
			es = es[n:]
			b.mu.Lock()
			b.lastErr = err
			b.mu.Unlock()
		}
	})
	return b
}

// Write implements Sink: it queues the event.
func (b *Buffered) Write(e Event) error {
	if b.batcher.Add(e) {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dropped++
	b.lastErr = errors.New("audit buffer full")
	return b.lastErr
}

// Healthy reports the last write's error (nil: healthy).
func (b *Buffered) Healthy() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastErr
}

// Close drains the queue.
func (b *Buffered) Close() { b.batcher.Close() }
