// Package catalog keeps each target's relations and columns fresh for the
// analyzer, which needs them to resolve names exactly as the database does
// and to trace result columns to their sources.
package catalog

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"io"
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

// Snapshot is what a loader reads: relations with their columns, tags
// from column comments, view definitions, rules, table inheritance and the
// names of user-defined functions (see policy.StaticCatalog).
type Snapshot struct {
	Relations map[string][]string
	Tags      map[string]map[string]string
	Views     map[string]string
	Rules     map[string][]string
	Parents   map[string][]string
	Functions map[string]bool
	// Builtins are pg_catalog's functions by name, with the most volatile
	// of their overloads ('i', 's' or 'v'), as pg_proc says.
	Builtins map[string]byte
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

// Refresh reloads now (see RefreshAfter).
func (s *Source) Refresh() policy.Catalog { return s.RefreshAfter(time.Now()) }

// RefreshAfter implements policy.CatalogSource: it returns the snapshot of
// a load that started at or after asked, loading now if none has. Misses
// that arrive while a load runs share it, and loads are at least minGap
// apart, so statements naming a relation that does not exist cannot hammer
// the database.
func (s *Source) RefreshAfter(asked time.Time) policy.Catalog {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.last.Before(asked) {
		return s.cur.Load() // a load started since has finished
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
	c.Tags, c.Views, c.RuleDefs, c.Parents, c.Functions, c.Builtins = snap.Tags, snap.Views, snap.Rules, snap.Parents, snap.Functions, snap.Builtins
	s.cur.Store(c)
	s.log.Info("catalog loaded", "target", s.name, "relations", len(snap.Relations), "tagged_columns", len(snap.Tags), "views", len(snap.Views))
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
	hashMap(h, "relations", snap.Relations)
	hashMap(h, "tags", snap.Tags)
	hashMap(h, "views", snap.Views)
	hashMap(h, "rules", snap.Rules)
	hashMap(h, "parents", snap.Parents)
	hashMap(h, "functions", snap.Functions)
	hashMap(h, "builtins", snap.Builtins)
	return h.Sum64() | 1
}

func hashMap[V any](h io.Writer, name string, m map[string]V) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(h, "%s:%d;", name, len(keys))
	for _, k := range keys {
		fmt.Fprintf(h, "%q=%v;", k, m[k])
	}
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

// pgViewsQuery reads view and materialized view definitions outside the
// system schemas. With an empty search_path pg_get_viewdef qualifies every
// relation with its schema, so the analyzer resolves them without one.
const pgViewsQuery = `
SELECT n.nspname, c.relname, pg_catalog.pg_get_viewdef(c.oid)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')`

// pgRulesQuery reads the rules on tables (a view's own _RETURN rule is its
// definition).
const pgRulesQuery = `
SELECT n.nspname, c.relname, pg_catalog.pg_get_ruledef(r.oid)
FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE r.rulename <> '_RETURN'`

// pgParentsQuery reads table inheritance (partitions and INHERITS).
const pgParentsQuery = `
SELECT cn.nspname, c.relname, pn.nspname, p.relname
FROM pg_catalog.pg_inherits i
JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace
JOIN pg_catalog.pg_class p ON p.oid = i.inhparent JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace`

// pgFunctionsQuery reads the names of functions outside the system schemas.
const pgFunctionsQuery = `
SELECT DISTINCT p.proname FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')`

// Postgres loads relations and columns from a PostgreSQL database.
func Postgres(url string) Loader {
	return func(ctx context.Context) (Snapshot, error) {
		var snap Snapshot
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return snap, fmt.Errorf("cannot connect for the catalog: %w", err)
		}
		defer conn.Close(ctx)
		if err := pgExtras(ctx, conn, &snap); err != nil {
			return snap, fmt.Errorf("cannot read the catalog: %w", err)
		}
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

// pgExtras reads views, rules, inheritance and function names.
func pgExtras(ctx context.Context, conn *pgx.Conn, snap *Snapshot) error {
	if _, err := conn.Exec(ctx, "SET search_path = ''"); err != nil {
		return err
	}
	snap.Views, snap.Rules, snap.Parents, snap.Functions = map[string]string{}, map[string][]string{}, map[string][]string{}, map[string]bool{}
	var a, b, c, d string
	if err := scanAll(ctx, conn, pgViewsQuery, func() { snap.Views[a+"."+b] = c }, &a, &b, &c); err != nil {
		return err
	}
	if err := scanAll(ctx, conn, pgRulesQuery, func() { snap.Rules[a+"."+b] = append(snap.Rules[a+"."+b], c) }, &a, &b, &c); err != nil {
		return err
	}
	if err := scanAll(ctx, conn, pgParentsQuery, func() { snap.Parents[a+"."+b] = append(snap.Parents[a+"."+b], c+"."+d) }, &a, &b, &c, &d); err != nil {
		return err
	}
	if err := scanAll(ctx, conn, pgFunctionsQuery, func() { snap.Functions[a] = true }, &a); err != nil {
		return err
	}
	snap.Builtins = map[string]byte{}
	return scanAll(ctx, conn, pgBuiltinsQuery, func() {
		if b != "" {
			snap.Builtins[a] = b[0]
		}
	}, &a, &b)
}

// pgBuiltinsQuery: 'i' < 's' < 'v', so max is the most volatile overload.
const pgBuiltinsQuery = `
SELECT p.proname::text, max(p.provolatile::text) FROM pg_catalog.pg_proc p
WHERE p.pronamespace = 'pg_catalog'::regnamespace GROUP BY 1`

// scanAll runs query and calls each after scanning a row into dest.
func scanAll(ctx context.Context, conn *pgx.Conn, query string, each func(), dest ...any) error {
	rows, err := conn.Query(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		each()
	}
	return rows.Err()
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
		if err := rows.Err(); err != nil {
			return snap, fmt.Errorf("cannot read the catalog: %w", err)
		}
		// View definitions, every name qualified, for lineage through them.
		vrows, err := db.QueryContext(ctx, `SELECT table_schema, table_name, view_definition FROM information_schema.views
			WHERE table_schema NOT IN ('information_schema', 'mysql', 'performance_schema')`)
		if err != nil {
			return snap, fmt.Errorf("cannot read the catalog's views: %w", err)
		}
		defer vrows.Close()
		snap.Views = map[string]string{}
		for vrows.Next() {
			var schema, view string
			var def sql.NullString
			if err := vrows.Scan(&schema, &view, &def); err != nil {
				return snap, fmt.Errorf("cannot read the catalog's views: %w", err)
			}
			// A definition the catalog login may not see reads as empty:
			// the view then cannot be traced and is refused.
			snap.Views[schema+"."+view] = def.String
		}
		return snap, vrows.Err()
	}
}
