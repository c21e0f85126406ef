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

// WriteBatch writes es to s, as one batch when s takes batches.
func WriteBatch(s Sink, es []Event) error {
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
		errs = append(errs, WriteBatch(s, es))
	}
	return errors.Join(errs...)
}

// Store keeps events in SQLite or PostgreSQL, in insertion order.
type Store struct {
	db      *sqlstore.DB
	mu      sync.Mutex
	inserts map[int]*sql.Stmt // prepared multi-row INSERTs by row count
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
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS sluice_audit_instances (
  instance TEXT PRIMARY KEY,
  host TEXT NOT NULL,
  pid BIGINT NOT NULL,
  started TEXT NOT NULL,
  beat TEXT NOT NULL,
  stopped TEXT NOT NULL DEFAULT ''
)`); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("cannot create audit instances table: %w", err)
	}
	return s, nil
}

// Instance is a sluice process writing to the store: it beats while it
// runs and marks a clean stop, so that a session it never closed can be
// told from one it still carries.
type Instance struct {
	ID, Host               string
	PID                    int
	Started, Beat, Stopped time.Time
}

const instanceTime = time.RFC3339Nano

// StartInstance records a starting sluice process.
func (s *Store) StartInstance(ctx context.Context, id, host string, pid int) error {
	now := time.Now().UTC().Format(instanceTime)
	_, err := s.db.ExecContext(ctx, s.db.Rebind("INSERT INTO sluice_audit_instances (instance, host, pid, started, beat) VALUES (?, ?, ?, ?, ?)"), id, host, pid, now, now)
	if err != nil {
		return fmt.Errorf("cannot record the audit instance: %w", err)
	}
	return nil
}

// Beat records that the instance still runs.
func (s *Store) Beat(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, s.db.Rebind("UPDATE sluice_audit_instances SET beat = ? WHERE instance = ?"), time.Now().UTC().Format(instanceTime), id)
	return err
}

// StopInstance records a clean stop (after the instance's sessions closed).
func (s *Store) StopInstance(ctx context.Context, id string) error {
	now := time.Now().UTC().Format(instanceTime)
	_, err := s.db.ExecContext(ctx, s.db.Rebind("UPDATE sluice_audit_instances SET beat = ?, stopped = ? WHERE instance = ?"), now, now, id)
	return err
}

// Instances returns every recorded instance by id.
func (s *Store) Instances(ctx context.Context) (map[string]Instance, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT instance, host, pid, started, beat, stopped FROM sluice_audit_instances")
	if err != nil {
		return nil, fmt.Errorf("cannot read audit instances: %w", err)
	}
	defer rows.Close()
	out := map[string]Instance{}
	for rows.Next() {
		var in Instance
		var started, beat, stopped string
		if err := rows.Scan(&in.ID, &in.Host, &in.PID, &started, &beat, &stopped); err != nil {
			return nil, err
		}
		in.Started, _ = time.Parse(instanceTime, started)
		in.Beat, _ = time.Parse(instanceTime, beat)
		in.Stopped, _ = time.Parse(instanceTime, stopped)
		out[in.ID] = in
	}
	return out, rows.Err()
}

// Close closes the store.
func (s *Store) Close() error {
	s.mu.Lock()
	for _, st := range s.inserts {
		st.Close()
	}
	s.inserts = nil
	s.mu.Unlock()
	return s.db.Close()
}

// Write implements Sink.
func (s *Store) Write(e Event) error { return s.WriteBatch([]Event{e}) }

// insertSizes are the row counts of the prepared multi-row INSERTs a batch
// is cut into (largest first): parsing a long INSERT for every batch cost
// more than running it.
var insertSizes = []int{64, 8, 1}

// insert returns the prepared INSERT of n rows.
func (s *Store) insert(n int) (*sql.Stmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.inserts[n]; st != nil {
		return st, nil
	}
	q := "INSERT INTO sluice_audit (session, seq, kind, event) VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?), ", n), ", ")
	st, err := s.db.Prepare(s.db.Rebind(q))
	if err != nil {
		return nil, err
	}
	if s.inserts == nil {
		s.inserts = map[int]*sql.Stmt{}
	}
	s.inserts[n] = st
	return st, nil
}

// WriteBatch implements BatchWriter: one transaction for the batch, written
// with prepared multi-row INSERTs.
func (s *Store) WriteBatch(es []Event) error {
	// Prepared before the transaction: a SQLite store has one connection,
	// which the transaction holds.
	stmts := make([]*sql.Stmt, len(insertSizes))
	for i, n := range insertSizes {
		st, err := s.insert(n)
		if err != nil {
			return fmt.Errorf("cannot store audit events: %w", err)
		}
		stmts[i] = st
	}
	tx, err := s.db.Begin()
	if err != nil {
		return fmt.Errorf("cannot store audit events: %w", err)
	}
	defer tx.Rollback()
	args := make([]any, 0, 4*insertSizes[0])
	for i, n := range insertSizes {
		for len(es) >= n {
			st := stmts[i]
			args = args[:0]
			for _, e := range es[:n] {
				args = append(args, e.Session, e.Seq, e.Kind, string(e.JSON()))
			}
			if _, err := tx.Stmt(st).Exec(args...); err != nil {
				return fmt.Errorf("cannot store audit events: %w", err)
			}
			es = es[n:]
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
	return scanEvents(rows)
}

// Recent returns the last n stored events, in insertion order.
func (s *Store) Recent(ctx context.Context, n int) ([]Event, error) {
	rows, err := s.db.QueryContext(ctx, s.db.Rebind("SELECT event FROM (SELECT id, event FROM sluice_audit ORDER BY id DESC LIMIT ?) recent ORDER BY id"), n)
	if err != nil {
		return nil, fmt.Errorf("cannot read audit events: %w", err)
	}
	return scanEvents(rows)
}

func scanEvents(rows *sql.Rows) ([]Event, error) {
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
// gathered for 100 ms, so a busy gateway pays one commit per batch rather
// than one per statement.
func NewBuffered(sink Sink, size int) *Buffered {
	b := &Buffered{}
	b.batcher = NewBatcher(size, 100*time.Millisecond, func(es []Event) {
		for len(es) > 0 {
			n := min(len(es), 512)
			err := WriteBatch(sink, es[:n])
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
