package e2e

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/sluicedb/sluice/devstack"
	"github.com/sluicedb/sluice/policy"
)

const myCorpusSchema = `
CREATE DATABASE sluice_demo; CREATE DATABASE other;
CREATE TABLE sluice_demo.customers (id int AUTO_INCREMENT PRIMARY KEY, name text, email text, ssn text);
CREATE TABLE sluice_demo.orders (id int AUTO_INCREMENT PRIMARY KEY, customer_id int, total_cents int, placed_at timestamp DEFAULT current_timestamp);
CREATE TABLE sluice_demo.products (id int PRIMARY KEY, name text, price_cents int);
CREATE TABLE other.notes (id int AUTO_INCREMENT PRIMARY KEY, body text);
INSERT INTO sluice_demo.customers VALUES (100, 'a', 'a@example.com', '123-45-6789');
INSERT INTO sluice_demo.orders (id, customer_id, total_cents) VALUES (10, 100, 100), (20, 100, 200);
CREATE USER corpus_analyst@'%' IDENTIFIED BY 'corpus';
CREATE USER corpus_migrator@'%' IDENTIFIED BY 'corpus';
GRANT SELECT ON sluice_demo.* TO corpus_analyst@'%';
GRANT SELECT ON other.* TO corpus_analyst@'%';
GRANT SELECT, INSERT, UPDATE, DELETE, LOCK TABLES ON sluice_demo.* TO corpus_migrator@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON other.* TO corpus_migrator@'%';
-- MySQL's TRUNCATE needs DROP: the closest the privilege model gets to the policy.
GRANT DROP ON sluice_demo.orders TO corpus_migrator@'%';
`

// TestDifferentialMariaDB does for MariaDB what TestDifferentialPostgres
// does for PostgreSQL, with the MySQL corpus.
func TestDifferentialMariaDB(t *testing.T) {
	ctx := context.Background()
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	m, err := devstack.StartMariaDB(ctx, filepath.Join(t.TempDir(), "mariadb"), port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop() })
	if err := m.Exec(ctx, myCorpusSchema); err != nil {
		t.Fatal(err)
	}
	cf, set, err := policy.LoadCases("../policy/testdata/corpus/mysql.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cat := policy.NewStaticCatalog(1, cf.Catalog["demo-mysql"])
	compareWithDatabase(t, "MariaDB", cf, set,
		func(sql string) policy.Analysis {
			return policy.AnalyzeMySQL(sql, policy.MySQLSession{Database: "sluice_demo"}, cat)
		},
		func(role, sql string, rollback bool) error { return myRunAs(ctx, m, role, sql, rollback) })
}

func myRunAs(ctx context.Context, m *devstack.MariaDB, role, q string, rollback bool) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	db, err := sql.Open("mysql", m.DSN(role, "corpus", "sluice_demo"))
	if err != nil {
		return err
	}
	defer db.Close()
	c, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if rollback {
		if _, err := c.ExecContext(ctx, "START TRANSACTION"); err != nil {
			return err
		}
		defer func() { _, _ = c.ExecContext(ctx, "ROLLBACK") }()
	}
	if strings.HasPrefix(strings.ToUpper(strings.TrimSpace(q)), "LOAD DATA") {
		_, err = c.ExecContext(ctx, q)
		return err
	}
	rows, err := c.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	for {
		for rows.Next() {
		}
		if !rows.NextResultSet() {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return rows.Close()
}
