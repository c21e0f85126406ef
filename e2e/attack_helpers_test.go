package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/sluicedb/sluice/config"
	"github.com/sluicedb/sluice/devstack"
)

// The attack tests run through a sluice whose every agent logs in to the
// databases as the user that owns everything (PostgreSQL's agent owns the
// demo data; MariaDB's has ALL on it): the database never saves sluice.
// Its policies are the defaults, so an analyst may only read.
var owner struct {
	once sync.Once
	gw   string
	err  error
}

func ownerGateway(t *testing.T) string {
	t.Helper()
	owner.once.Do(func() {
		ctx := context.Background()
		c, _, err := stack.StartServeWith(ctx, "serve-owner", func(c *config.Config) {
			c.Approvals.Store = "approvals-owner.db"
			for i := range c.Targets {
				c.Targets[i].Credentials = []config.Credential{{User: devstack.AgentDBUser, PasswordFile: "keys/db-agent.password"}}
			}
		})
		if err != nil {
			owner.err = err
			return
		}
		owner.gw, owner.err = stack.StartEnvoyWith(ctx, "envoy-owner", func(e *config.Config) { e.ExtProc.Address = c.ExtProc.Listen })
	})
	if owner.err != nil {
		t.Fatal(owner.err)
	}
	return owner.gw
}

// ownerConnect starts a connector through the owner gateway to target for
// an agent and returns its address.
func ownerConnect(t *testing.T, target, sub string, groups []string) string {
	t.Helper()
	gw := ownerGateway(t)
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	name := fmt.Sprintf("connect-%s-%s-%d", strings.ReplaceAll(t.Name(), "/", "_"), target, port)
	p, err := stack.StartConnectVia(context.Background(), name, gw, target, addr, tokenFor(t, sub, groups))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	return addr
}

// analystPG is a pgx connection of an analyst through the owner gateway.
func analystPG(t *testing.T) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), stack.AgentURL(ownerConnect(t, devstack.DemoTarget, "attacker", []string{"analysts"})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// analystMySQL is a go-sql-driver pool of an analyst through the owner
// gateway, with multi-statements on.
func analystMySQL(t *testing.T) *sql.DB { return analystMySQLCharset(t, "") }

// analystMySQLCharset is analystMySQL with the client character set
// charset ("" for the driver's default).
func analystMySQLCharset(t *testing.T, charset string) *sql.DB {
	t.Helper()
	cfg, err := gomysql.ParseDSN(stack.MySQLDSN(ownerConnect(t, mysqlTarget, "attacker", []string{"analysts"})))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MultiStatements = true
	if charset != "" {
		cfg.Params = map[string]string{"charset": charset}
	}
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

// The databases' own record of what they ran. PostgreSQL logs every
// statement of the owner's sessions; MariaDB's general log records every
// command.
var dbLogs struct {
	once   sync.Once
	myFile string
	err    error
}

func enableDatabaseLogs(t *testing.T) {
	t.Helper()
	dbLogs.once.Do(func() {
		ctx := context.Background()
		if err := stack.PG.Exec(ctx, "postgres", "ALTER ROLE "+devstack.AgentDBUser+" SET log_statement = 'all'"); err != nil {
			dbLogs.err = err
			return
		}
		dbLogs.myFile = filepath.Join(stack.Maria.Dir, "general.log")
		dbLogs.err = stack.Maria.Exec(ctx, fmt.Sprintf("SET GLOBAL general_log_file = '%s'; SET GLOBAL general_log = 1", dbLogs.myFile))
	})
	if dbLogs.err != nil {
		t.Fatal(dbLogs.err)
	}
}

// dbLog marks the databases' logs; its result reads what they logged
// since (PostgreSQL, MariaDB).
func dbLog(t *testing.T) func() (pg, my string) {
	t.Helper()
	enableDatabaseLogs(t)
	pgFile := filepath.Join(stack.PG.Dir, "server.log")
	pgMark, myMark := fileSize(pgFile), fileSize(dbLogs.myFile)
	return func() (string, string) {
		time.Sleep(300 * time.Millisecond) // the servers write their logs asynchronously
		return readFrom(pgFile, pgMark), readFrom(dbLogs.myFile, myMark)
	}
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func readFrom(path string, off int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// notRun fails if a database log shows a statement containing any of bad.
func notRun(t *testing.T, log string, bad ...string) {
	t.Helper()
	for _, b := range bad {
		if strings.Contains(log, b) {
			t.Errorf("the database ran %q:\n%s", b, tailLines(log, b))
		}
	}
}

func tailLines(log, around string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, around) {
			return l
		}
	}
	return ""
}

// count reads one number from the database directly (not through sluice).
func pgCount(t *testing.T, q string) int {
	t.Helper()
	c, err := stack.PG.Connect(context.Background(), devstack.DemoDatabase)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(context.Background(), q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func myCount(t *testing.T, q string) int {
	t.Helper()
	db, err := stack.Maria.Root(devstack.DemoDatabase)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// realValue reports whether out shows a real email or ssn of the demo.
func realValue(out string) bool {
	for _, v := range []string{"@example.com", "-45-6789"} {
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, v) && !strings.Contains(line, "***") && !strings.Contains(line, "[redacted]") && !strings.Contains(line, "tok_") {
				return true
			}
		}
	}
	return false
}

// rawMySQL is a hand-built MySQL client: it logs in (sluice brokers the
// password) and sends packets as the test writes them.
type rawMySQL struct {
	t   *testing.T
	c   net.Conn
	buf []byte
}

func dialRawMySQL(t *testing.T, addr string) *rawMySQL {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	m := &rawMySQL{t: t, c: c}
	greeting := m.read()
	if len(greeting) == 0 || greeting[0] != 10 {
		t.Fatalf("greeting: %q", greeting)
	}
	// protocol 4.1, secure connection, plugin auth, multi-statements and
	// results; no password (sluice logs in).
	caps := uint32(1<<9 | 1<<15 | 1<<19 | 1<<16 | 1<<17 | 1<<3)
	b := binary.LittleEndian.AppendUint32(nil, caps)
	b = binary.LittleEndian.AppendUint32(b, 1<<24)
	b = append(b, 45)
	b = append(b, make([]byte, 23)...)
	b = append(append(b, devstack.AgentDBUser...), 0)
	b = append(b, 0)
	b = append(append(b, devstack.DemoDatabase...), 0)
	b = append(append(b, "mysql_native_password"...), 0)
	m.write(b, 1)
	if ok := m.read(); len(ok) == 0 || ok[0] != 0 {
		t.Fatalf("login: %q", ok)
	}
	return m
}

func (m *rawMySQL) write(payload []byte, seq byte) {
	m.t.Helper()
	p := []byte{byte(len(payload)), byte(len(payload) >> 8), byte(len(payload) >> 16), seq}
	if _, err := m.c.Write(append(p, payload...)); err != nil {
		m.t.Fatal(err)
	}
}

// send writes several commands in one write (pipelined).
func (m *rawMySQL) send(cmds ...[]byte) {
	m.t.Helper()
	var b []byte
	for _, c := range cmds {
		b = append(b, byte(len(c)), byte(len(c)>>8), byte(len(c)>>16), 0)
		b = append(b, c...)
	}
	if _, err := m.c.Write(b); err != nil {
		m.t.Fatal(err)
	}
}

// read returns the next packet's payload.
func (m *rawMySQL) read() []byte {
	m.t.Helper()
	_ = m.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(m.c, hdr); err != nil {
		m.t.Fatalf("read: %v", err)
	}
	n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
	p := make([]byte, n)
	if _, err := io.ReadFull(m.c, p); err != nil {
		m.t.Fatalf("read: %v", err)
	}
	return p
}

// drain reads packets until none arrives for a moment and returns them
// joined, for substring checks.
func (m *rawMySQL) drain() string {
	var out bytes.Buffer
	for {
		_ = m.c.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
		hdr := make([]byte, 4)
		if _, err := io.ReadFull(m.c, hdr); err != nil {
			return out.String()
		}
		n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
		p := make([]byte, n)
		if _, err := io.ReadFull(m.c, p); err != nil {
			return out.String()
		}
		out.Write(p)
		out.WriteByte('\n')
	}
}

// prepare sends COM_STMT_PREPARE and returns the statement id the
// server gave it (MariaDB's ids need not start at 1 on a new connection)
// with the whole answer, for substring checks; the test fails if the
// statement was not prepared.
func (m *rawMySQL) prepare(sql string) (uint32, string) {
	m.t.Helper()
	m.send(comPrepare(sql))
	first := m.read()
	out := string(first) + "\n" + m.drain()
	if len(first) < 5 || first[0] != 0 {
		m.t.Fatalf("prepare %q: %q", sql, out)
	}
	return binary.LittleEndian.Uint32(first[1:]), out
}

func comQuery(sql string) []byte { return append([]byte{0x03}, sql...) }

func comPrepare(sql string) []byte { return append([]byte{0x16}, sql...) }

func comExecute(id uint32, flags byte) []byte {
	b := binary.LittleEndian.AppendUint32([]byte{0x17}, id)
	return append(b, flags, 1, 0, 0, 0)
}

func comFetch(id, rows uint32) []byte {
	return binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32([]byte{0x1c}, id), rows)
}
