package devstack

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/go-sql-driver/mysql"
)

// MariaDB is a throwaway MariaDB server listening on loopback.
type MariaDB struct {
	Dir  string
	Port int
	proc *Process
}

// StartMariaDB creates a data directory in dir (reusing one already there)
// and starts mariadbd on port.
func StartMariaDB(ctx context.Context, dir string, port int) (*MariaDB, error) {
	m := &MariaDB{Dir: dir, Port: port}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create %s: %w", data, err)
	}
	traversable(dir)
	var asUser []string
	if os.Geteuid() == 0 {
		asUser = []string{"--user=mysql"}
		_ = exec.Command("chown", "-R", "mysql:mysql", dir).Run()
	}
	if _, err := os.Stat(filepath.Join(data, "mysql", "user.frm")); err != nil {
		args := append([]string{"--no-defaults", "--datadir=" + data, "--auth-root-authentication-method=normal", "--skip-test-db"}, asUser...)
		out, err := exec.CommandContext(ctx, "mariadb-install-db", args...).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("cannot initialize mariadb: %w: %s", err, out)
		}
	}
	args := append([]string{"--no-defaults", "--datadir=" + data, "--port=" + strconv.Itoa(port),
		"--bind-address=127.0.0.1", "--socket=" + m.socket(), "--pid-file=" + filepath.Join(dir, "mariadb.pid"),
		"--skip-name-resolve", "--innodb-flush-log-at-trx-commit=0", "--max-allowed-packet=64M"}, asUser...)
	p, err := StartProcess(dir, "mariadb", "/usr/sbin/mariadbd", args...)
	if err != nil {
		return nil, err
	}
	m.proc = p
	if err := p.WaitTCP(ctx, m.Addr()); err != nil {
		return nil, err
	}
	if err := ready("mariadb did not accept connections", func() error { return m.Exec(ctx, "SELECT 1") }); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *MariaDB) socket() string { return filepath.Join(m.Dir, "mysqld.sock") }

// Addr is the server's host:port.
func (m *MariaDB) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(m.Port)) }

// DSN is a go-sql-driver/mysql DSN for user over TCP.
func (m *MariaDB) DSN(user, password, db string) string {
	c := mysql.NewConfig()
	c.User, c.Passwd, c.Net, c.Addr, c.DBName = user, password, "tcp", m.Addr(), db
	c.MultiStatements = true
	return c.FormatDSN()
}

// root opens a connection as root over the unix socket.
func (m *MariaDB) root(db string) (*sql.DB, error) {
	c := mysql.NewConfig()
	c.User, c.Net, c.Addr, c.DBName = "root", "unix", m.socket(), db
	c.MultiStatements = true
	return sql.Open("mysql", c.FormatDSN())
}

// Root opens a root connection to db over the server's socket.
func (m *MariaDB) Root(db string) (*sql.DB, error) { return m.root(db) }

// Exec runs SQL (several statements allowed) as root.
func (m *MariaDB) Exec(ctx context.Context, q string) error {
	db, err := m.root("")
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("cannot run setup SQL: %w", err)
	}
	return nil
}

// Stop shuts the server down.
func (m *MariaDB) Stop() error {
	if m.proc == nil {
		return nil
	}
	return m.proc.StopWith(syscall.SIGTERM) // mariadbd shuts down on SIGTERM
}
