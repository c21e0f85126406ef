// Package sqlstore opens sluice's embedded state: a SQLite file by default,
// or PostgreSQL (a postgres:// URL) for several replicas. Stores write their
// queries with ? placeholders; Rebind turns them into PostgreSQL's $n.
package sqlstore

import (
	"database/sql"
	"fmt"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"
)

// DB is an open store.
type DB struct {
	*sql.DB
	Postgres bool
	URL      string
}

// IsPostgres reports whether url names a PostgreSQL database.
func IsPostgres(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
}

// Open opens url: a postgres:// URL, or a SQLite file path (optionally
// sqlite://path).
func Open(url string) (*DB, error) {
	if IsPostgres(url) {
		db, err := sql.Open("pgx", url)
		if err != nil {
			return nil, fmt.Errorf("cannot open %s: %w", "postgres store", err)
		}
		return &DB{DB: db, Postgres: true, URL: url}, nil
	}
	// WAL and a busy timeout let serve and the CLI share the file;
	// synchronous=NORMAL is durable across a sluice crash without an fsync
	// per commit.
	db, err := sql.Open("sqlite", "file:"+strings.TrimPrefix(url, "sqlite://")+
		"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return nil, fmt.Errorf("cannot open sqlite store: %w", err)
	}
	db.SetMaxOpenConns(1) // SQLite serializes writers anyway
	return &DB{DB: db, URL: url}, nil
}

// Rebind rewrites ? placeholders for PostgreSQL.
func (d *DB) Rebind(query string) string {
	if !d.Postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}
