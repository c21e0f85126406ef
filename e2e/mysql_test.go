package e2e

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/sluicedb/sluice/devstack"
)

const mysqlTarget = devstack.DemoTarget + "-mysql"

func mysqlConnect(t *testing.T) string {
	t.Helper()
	return connectTo(t, mysqlTarget, stack.TokenFile)
}

func mysqlCLI(t *testing.T, addr string, sql string) (string, error) {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mysql", "--no-defaults", "--force", "-h", host, "-P", port,
		"-u", devstack.AgentDBUser, devstack.DemoDatabase) // no password: sluice logs in
	// One statement a line: with --force the client goes on after an error.
	cmd.Stdin = strings.NewReader(strings.ReplaceAll(sql, "; ", ";\n") + "\n")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestMySQLCLIReadRefuseContinue(t *testing.T) {
	addr := mysqlConnect(t)
	out, _ := mysqlCLI(t, addr, "SELECT name, email FROM customers ORDER BY id LIMIT 2; DROP TABLE customers; SELECT count(*) AS n FROM customers")
	for _, want := range []string{"Customer 1", "c***@example.com", "ERROR 1142 (42000)", "sluice: DROP on table sluice_demo.customers refused by policy no-ddl", "\n50\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("mysql output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "customer1@example.com") {
		t.Errorf("unmasked email:\n%s", out)
	}
	// The table is still there.
	db, err := stack.Maria.Root(devstack.DemoDatabase)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM customers").Scan(&n); err != nil || n != 50 {
		t.Fatalf("customers after the refused DROP: %d %v", n, err)
	}
}

func TestMySQLDriverBothProtocols(t *testing.T) {
	addr := mysqlConnect(t)
	for _, interpolate := range []bool{false, true} {
		cfg, err := mysql.ParseDSN(stack.MySQLDSN(addr))
		if err != nil {
			t.Fatal(err)
		}
		cfg.InterpolateParams = interpolate
		cfg.MultiStatements = true
		db, err := sql.Open("mysql", cfg.FormatDSN())
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var name, email string
		if err := c.QueryRowContext(ctx, "SELECT name, email FROM customers WHERE id = ?", 1).Scan(&name, &email); err != nil {
			t.Fatalf("interpolate=%v: %v", interpolate, err)
		}
		if name != "Customer 1" || email != "c***@example.com" {
			t.Errorf("interpolate=%v: got %q %q", interpolate, name, email)
		}
		_, err = c.ExecContext(ctx, "DROP TABLE customers")
		var me *mysql.MySQLError
		if !errors.As(err, &me) || me.Number != 1142 || !strings.Contains(me.Message, "no-ddl") {
			t.Errorf("interpolate=%v: DROP: %v", interpolate, err)
		}
		_, err = c.ExecContext(ctx, "SELECT 1; DELETE FROM orders WHERE id = 1")
		if !errors.As(err, &me) || me.Number != 1142 {
			t.Errorf("interpolate=%v: refused multi-statement: %v", interpolate, err)
		}
		var n int
		if err := c.QueryRowContext(ctx, "SELECT count(*) FROM orders WHERE total_cents > ?", 0).Scan(&n); err != nil || n != 200 {
			t.Errorf("interpolate=%v: connection after refusals: %d %v", interpolate, n, err)
		}
		c.Close()
		db.Close()
	}
}

func TestMySQLLargeResultsByteExact(t *testing.T) {
	ctx := context.Background()
	if err := stack.Maria.Exec(ctx, `USE sluice_demo;
	  CREATE TABLE IF NOT EXISTS big (id int PRIMARY KEY, v longtext);
	  DELETE FROM big;
	  INSERT INTO big VALUES (1, repeat('abcdefghij', 2000000));
	  CREATE TABLE IF NOT EXISTS rows100 (id int PRIMARY KEY, v longtext);
	  DELETE FROM rows100;
	  INSERT INTO rows100 SELECT seq, repeat(md5(seq), 3300) FROM seq_1_to_100;
	  GRANT SELECT ON sluice_demo.big TO 'agent'@'%';`); err != nil {
		t.Fatal(err)
	}
	digest := func(dsn, q string) (string, int) {
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		rows, err := db.QueryContext(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		h := sha256.New()
		n := 0
		cols, _ := rows.Columns()
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				h.Write(v)
				n += len(v)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%x", h.Sum(nil)), n
	}
	addr := mysqlConnect(t)
	direct := stack.Maria.DSN(devstack.AgentDBUser, devstack.AgentDBPass, devstack.DemoDatabase)
	for _, q := range []string{
		"SELECT v FROM big WHERE id = 1",
		"SELECT id, v FROM rows100 ORDER BY id",
	} {
		want, n := digest(direct, q)
		got, m := digest(stack.MySQLDSN(addr), q)
		t.Logf("%s: %d bytes direct, %d through sluice", q, n, m)
		if got != want || n != m || n < 10<<20 {
			t.Errorf("%s differs or is small: %s/%d vs %s/%d", q, got, m, want, n)
		}
	}
}
