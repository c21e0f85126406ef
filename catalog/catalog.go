// Package catalog keeps each target's relations and columns fresh for the
// analyzer, which needs them to resolve names exactly as the database does
// and to trace result columns to their sources.
package catalog

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/go-sql-driver/mysql" // the MySQL catalog reader
	"github.com/jackc/pgx/v5"

	"github.com/sluicedb/sluice/policy"
)

// Snapshot is what a loader reads: relations with their columns, and tags
// from column comments.
type Snapshot struct {
	Relations map[string][]string
	Tags      map[string]map[string]string
}

// Loader reads a catalog snapshot from a database.
type Loader func(ctx context.Context) (Snapshot, error)

// Source holds a target's current snapshot and refreshes it periodically and
// on demand. Until the first load succeeds it holds an empty snapshot, so
// statements naming relations are refused rather than guessed.
type Source struct {
	name   string
	load   Loader
	log    *slog.Logger
	minGap time.Duration

	cur  atomic.Pointer[policy.StaticCatalog]
	mu   sync.Mutex // serializes loads
	last time.Time
}

// NewSource returns a source for target name.
func NewSource(name string, load Loader, log *slog.Logger) *Source {
	s := &Source{name: name, load: load, log: log, minGap: 200 * time.Millisecond}
	s.cur.Store(policy.NewStaticCatalog(0, map[string][]string{}))
	return s
}

// Current implements policy.CatalogSource.
func (s *Source) Current() policy.Catalog { return s.cur.Load() }

// Refresh implements policy.CatalogSource: it reloads now. Misses that
// arrive while a load runs share it, and loads are at least minGap apart, so
// a statement naming a relation that does not exist cannot hammer the database.
func (s *Source) Refresh() policy.Catalog {
	asked := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last.After(asked) {
		return s.cur.Load() // a load started after we asked has finished
	}
	if wait := s.minGap - time.Since(s.last); wait > 0 {
		time.Sleep(wait)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.reload(ctx); err != nil {
		s.log.Warn("catalog refresh failed", "target", s.name, "err", err)
	}
	return s.cur.Load()
}

func (s *Source) reload(ctx context.Context) error {
	s.last = time.Now()
	snap, err := s.load(ctx)
	if err != nil {
		return err
	}
	gen := fingerprint(snap)
	if gen == s.cur.Load().Gen {
		return nil
	}
	c := policy.NewStaticCatalog(gen, snap.Relations)
	c.Tags = snap.Tags
	s.cur.Store(c)
	s.log.Info("catalog loaded", "target", s.name, "relations", len(snap.Relations), "tagged_columns", len(snap.Tags))
	return nil
}

// Run refreshes every interval until ctx ends.
func (s *Source) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.mu.Lock()
		err := s.reload(ctx)
		s.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			s.log.Warn("catalog refresh failed", "target", s.name, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// fingerprint identifies a snapshot's content; 0 is reserved for empty.
func fingerprint(snap Snapshot) uint64 {
	h := fnv.New64a()
	for _, m := range []map[string][]string{snap.Relations} {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(h, "%s(%v)", k, m[k])
		}
	}
	tkeys := make([]string, 0, len(snap.Tags))
	for k := range snap.Tags {
		tkeys = append(tkeys, k)
	}
	sort.Strings(tkeys)
	for _, k := range tkeys {
		fmt.Fprintf(h, "%s%v", k, snap.Tags[k])
	}
	return h.Sum64() | 1
}

const pgQuery = `
SELECT n.nspname, c.relname,
       coalesce(array_agg(a.attname::text ORDER BY a.attnum)
                FILTER (WHERE a.attnum > 0 AND NOT a.attisdropped), '{}'),
       coalesce(array_agg(coalesce(pg_catalog.col_description(c.oid, a.attnum), '') ORDER BY a.attnum)
                FILTER (WHERE a.attnum > 0 AND NOT a.attisdropped), '{}')
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f')
  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
GROUP BY 1, 2`

// Postgres loads relations and columns from a PostgreSQL database.
func Postgres(url string) Loader {
	return func(ctx context.Context) (Snapshot, error) {
		var snap Snapshot
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return snap, fmt.Errorf("cannot connect for the catalog: %w", err)
		}
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, pgQuery)
		if err != nil {
			return snap, fmt.Errorf("cannot read the catalog: %w", err)
		}
		snap.Relations, snap.Tags = map[string][]string{}, map[string]map[string]string{}
		for rows.Next() {
			var schema, rel string
			var cols, comments []string
			if err := rows.Scan(&schema, &rel, &cols, &comments); err != nil {
				return snap, fmt.Errorf("cannot read the catalog: %w", err)
			}
			snap.Relations[schema+"."+rel] = slices.Clip(cols)
			for i, c := range comments {
				if tags := policy.ParseTagComment(c); tags != nil && i < len(cols) {
					snap.Tags[schema+"."+rel+"."+cols[i]] = tags
				}
			}
		}
		if err := rows.Err(); err != nil {
			return snap, fmt.Errorf("cannot read the catalog: %w", err)
		}
		return snap, nil
	}
}

// MySQL loads tables and columns from information_schema (MySQL, MariaDB).
func MySQL(dsn string) Loader {
	return func(ctx context.Context) (Snapshot, error) {
		var snap Snapshot
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			return snap, fmt.Errorf("cannot open the catalog connection: %w", err)
		}
		defer db.Close()
		rows, err := db.QueryContext(ctx, `SELECT table_schema, table_name, column_name, column_comment
			FROM information_schema.columns ORDER BY table_schema, table_name, ordinal_position`)
		if err != nil {
			return snap, fmt.Errorf("cannot read the catalog: %w", err)
		}
		defer rows.Close()
		snap.Relations, snap.Tags = map[string][]string{}, map[string]map[string]string{}
		for rows.Next() {
			var schema, table, col, comment string
			if err := rows.Scan(&schema, &table, &col, &comment); err != nil {
				return snap, fmt.Errorf("cannot read the catalog: %w", err)
			}
			k := schema + "." + table
			snap.Relations[k] = append(snap.Relations[k], col)
			if tags := policy.ParseTagComment(comment); tags != nil {
				snap.Tags[k+"."+col] = tags
			}
		}
		return snap, rows.Err()
	}
}
