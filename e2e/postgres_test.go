package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluicedb/sluice/devstack"
)

func TestPsqlSelectRefusedDropNextSelect(t *testing.T) {
	out, err := psql(t, stack.AgentURL(""),
		"SELECT name FROM customers ORDER BY id LIMIT 2",
		"DROP TABLE customers",
		"SELECT count(*) AS n FROM customers")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out) // psql's status is the last command's
	}
	for _, want := range []string{
		"Customer 1", "Customer 2",
		"ERROR:  42501: sluice: DROP on table public.customers refused by policy no-ddl",
		" 50\n(1 row)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("psql output lacks %q:\n%s", want, out)
		}
	}
	ctx := context.Background()
	c, err := stack.PG.Connect(ctx, devstack.DemoDatabase)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&n); err != nil || n != 50 {
		t.Fatalf("customers after refused DROP: n=%d err=%v", n, err)
	}
}

// batchOutcome runs three statements as one pgx batch (one pipeline, one Sync)
// and reports each result as "ok:<rows>" or "err:<SQLSTATE>".
func batchOutcome(t *testing.T, url string, stmts [3]string) [3]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	b := &pgx.Batch{}
	for _, s := range stmts {
		b.Queue(s)
	}
	br := c.SendBatch(ctx, b)
	var res [3]string
	for i := range stmts {
		rows, err := br.Query()
		var vals []string
		if err == nil {
			for rows.Next() {
				v, _ := rows.Values()
				vals = append(vals, fmt.Sprint(v...))
			}
			rows.Close()
			err = rows.Err()
		}
		var pe *pgconn.PgError
		switch {
		case errors.As(err, &pe):
			res[i] = "err:" + pe.Code
		case err != nil:
			res[i] = "err:" + err.Error()
		default:
			res[i] = "ok:" + strings.Join(vals, ",")
		}
	}
	if err := br.Close(); err != nil {
		t.Logf("batch close: %v", err)
	}
	// The connection stays usable.
	var one int
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("connection unusable after the batch: %v", err)
	}
	return res
}

func TestPgxPipelineMiddleRefused(t *testing.T) {
	ctx := context.Background()
	// Without sluice, a role that does not own the table gets 42501 from
	// PostgreSQL itself for the DROP: that is the behaviour to match.
	if err := stack.PG.Exec(ctx, devstack.DemoDatabase, `DO $$ BEGIN
	  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'lowpriv') THEN
	    CREATE ROLE lowpriv LOGIN PASSWORD 'lowpriv'; END IF; END $$;
	  GRANT SELECT ON ALL TABLES IN SCHEMA public TO lowpriv;`); err != nil {
		t.Fatal(err)
	}
	stmts := [3]string{
		"SELECT id FROM customers WHERE id <= 2 ORDER BY id",
		"DROP TABLE orders",
		"SELECT count(*) FROM orders",
	}
	direct := batchOutcome(t, stack.PG.URL("lowpriv", "lowpriv", devstack.DemoDatabase), stmts)
	through := batchOutcome(t, stack.AgentURL(""), stmts)
	t.Logf("direct (db refuses): %v; through sluice: %v", direct, through)
	if direct[1] != "err:42501" {
		t.Fatalf("direct DROP by a non-owner: got %s, want err:42501", direct[1])
	}
	if through != direct {
		t.Fatalf("through sluice %v, direct %v: they must behave alike", through, direct)
	}
	if through[0] != "ok:1,2" {
		t.Fatalf("first statement: %s", through[0])
	}
}

func TestPgxPipelineSyncPerStatement(t *testing.T) {
	// pgconn pipeline with a Sync after each statement: only the middle one fails.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, stack.AgentURL(""))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	p := c.StartPipeline(ctx)
	p.SendQueryParams("SELECT 1", nil, nil, nil, nil)
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	p.SendQueryParams("TRUNCATE orders", nil, nil, nil, nil)
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	p.SendQueryParams("SELECT 3", nil, nil, nil, nil)
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		r, err := p.GetResults()
		if err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) {
				got = append(got, "err:"+pe.Code)
				continue
			}
			t.Fatal(err)
		}
		if r == nil {
			break
		}
		switch r := r.(type) {
		case *pgconn.ResultReader:
			res := r.Read()
			if res.Err != nil {
				var pe *pgconn.PgError
				errors.As(res.Err, &pe)
				got = append(got, "err:"+pe.Code)
			} else {
				got = append(got, "ok:"+string(res.Rows[0][0]))
			}
		case *pgconn.PipelineSync:
			got = append(got, "sync")
		}
		if len(got) == 6 {
			break
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	want := "ok:1 sync err:42501 sync ok:3 sync"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %v, want %s", got, want)
	}
}

// resultDigest reads every value of a query in text format.
func resultDigest(t *testing.T, url, sql string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgconn.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	rr := c.ExecParams(ctx, sql, nil, nil, nil, nil)
	h := sha256.New()
	n := 0
	for rr.NextRow() {
		for _, v := range rr.Values() {
			h.Write(v)
			h.Write([]byte{0})
			n += len(v)
		}
	}
	if _, err := rr.Close(); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil)), n
}

func TestLargeResultByteExact(t *testing.T) {
	// 10 MB: 60 rows of ~160 KB (over 64 KB each) and 2,000 small rows.
	sql := `SELECT g, repeat(md5(g::text), 5000 + g) FROM generate_series(1, 60) g
	        UNION ALL SELECT g, repeat(md5(g::text), 50) FROM generate_series(61, 2060) g`
	want, n := resultDigest(t, stack.PG.URL("postgres", stack.PG.SuperPassword, devstack.DemoDatabase), sql)
	got, m := resultDigest(t, stack.AgentURL(""), sql)
	t.Logf("result bytes: direct %d, through sluice %d", n, m)
	if n < 10<<20 {
		t.Fatalf("test result is only %d bytes", n)
	}
	if got != want || n != m {
		t.Fatalf("result differs through sluice: %s (%d bytes) vs %s (%d bytes)", got, m, want, n)
	}
}

func TestCopyInAndOut100k(t *testing.T) {
	url := agentConnect(t, "copy-agent", []string{"migrators"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := stack.PG.Exec(ctx, devstack.DemoDatabase,
		"DROP TABLE IF EXISTS copy_t; CREATE TABLE copy_t (id int, v text); ALTER TABLE copy_t OWNER TO agent"); err != nil {
		t.Fatal(err)
	}
	var in bytes.Buffer
	for i := range 100000 {
		fmt.Fprintf(&in, "%d\tvalue-%d\n", i, i)
	}
	c, err := pgconn.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	tag, err := c.CopyFrom(ctx, bytes.NewReader(in.Bytes()), "COPY copy_t FROM STDIN")
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != 100000 {
		t.Fatalf("COPY FROM: %s", tag)
	}
	var out bytes.Buffer
	tag, err = c.CopyTo(ctx, &out, "COPY (SELECT * FROM copy_t ORDER BY id) TO STDOUT")
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != 100000 || !bytes.Equal(out.Bytes(), in.Bytes()) {
		t.Fatalf("COPY TO: %s, %d bytes, equal=%v", tag, out.Len(), bytes.Equal(out.Bytes(), in.Bytes()))
	}
	// An analyst may not COPY in.
	c2, err := pgconn.Connect(ctx, stack.AgentURL(""))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(ctx)
	_, err = c2.CopyFrom(ctx, strings.NewReader("1\tx\n"), "COPY copy_t FROM STDIN")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" {
		t.Fatalf("COPY FROM by a reader: %v", err)
	}
}

func TestCancelRequest(t *testing.T) {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, stack.AgentURL(""))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	// The client's cancel request travels on a new connection through the
	// connector and Envoy, like any psql or pgx cancel.
	go func() {
		time.Sleep(time.Second)
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := c.PgConn().CancelRequest(cctx); err != nil {
			t.Errorf("cancel request: %v", err)
		}
	}()
	start := time.Now()
	_, err = c.Exec(ctx, "SELECT pg_sleep(30)")
	took := time.Since(start)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" {
		t.Fatalf("pg_sleep(30) with a 1s deadline: %v (after %v), want SQLSTATE 57014 from the server's cancel", err, took)
	}
	if took > 10*time.Second {
		t.Fatalf("cancel took %v", took)
	}
	t.Logf("pg_sleep(30) cancelled after %v", took)
}

func TestNotificationsThroughTunnel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, stack.AgentURL(""))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "LISTEN sluice_jobs"); err != nil {
		t.Fatal(err)
	}
	// Another session (here: the superuser, directly) notifies.
	if err := stack.PG.Exec(ctx, devstack.DemoDatabase, "NOTIFY sluice_jobs, 'job 42'"); err != nil {
		t.Fatal(err)
	}
	n, err := c.WaitForNotification(ctx)
	if err != nil || n.Channel != "sluice_jobs" || n.Payload != "job 42" {
		t.Fatalf("notification through the tunnel: %+v, %v", n, err)
	}
	// The agent itself may not NOTIFY other sessions by default.
	_, err = c.Exec(ctx, "NOTIFY sluice_jobs")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" {
		t.Fatalf("NOTIFY by an agent: %v", err)
	}
}
