// Package devstack runs sluice's whole data path on one machine: a throwaway
// PostgreSQL cluster, the real Envoy from the project's virtualenv, and the
// sluice serve and connect processes. `sluice demo`, the bench command and
// the end-to-end tests all start it the same way.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Postgres is a throwaway cluster listening on loopback.
type Postgres struct {
	Dir           string // data directory
	Bin           string // folder of the server binaries
	Port          int
	SuperPassword string
}

// PostgresBin finds the newest installed PostgreSQL server binaries.
func PostgresBin() (string, error) {
	if d := os.Getenv("SLUICE_PG_BIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("no PostgreSQL server found under /usr/lib/postgresql: run scripts/setup")
}

func pgMajor(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// runAsPostgres runs a server binary; PostgreSQL refuses to run as root, so
// as root it runs as the postgres system user.
func runAsPostgres(ctx context.Context, name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	return exec.CommandContext(ctx, name, args...)
}

func chownPostgres(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("cannot find the postgres user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return filepath.Walk(path, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// StartPostgres creates a cluster in dir (reusing one already there) and
// starts it on port with SCRAM authentication.
func StartPostgres(ctx context.Context, dir string, port int) (*Postgres, error) {
	bin, err := PostgresBin()
	if err != nil {
		return nil, err
	}
	p := &Postgres{Dir: filepath.Join(dir, "pgdata"), Bin: bin, Port: port, SuperPassword: "sluice-dev-superuser"}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create %s: %w", dir, err)
	}
	traversable(dir)
	if _, err := os.Stat(filepath.Join(p.Dir, "PG_VERSION")); err != nil {
		pwfile := filepath.Join(dir, "pgpass.init")
		if err := os.WriteFile(pwfile, []byte(p.SuperPassword+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("cannot write password file: %w", err)
		}
		if err := os.MkdirAll(p.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("cannot create data directory: %w", err)
		}
		if err := chownPostgres(dir); err != nil {
			return nil, err
		}
		out, err := runAsPostgres(ctx, filepath.Join(bin, "initdb"), "-D", p.Dir, "-U", "postgres",
			"--auth=scram-sha-256", "--pwfile="+pwfile, "--no-sync", "-E", "UTF8", "--locale=C").CombinedOutput()
		os.Remove(pwfile)
		if err != nil {
			return nil, fmt.Errorf("cannot initdb: %w: %s", err, out)
		}
		conf := fmt.Sprintf("\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\nlog_min_messages = warning\n", port, p.Dir)
		f, err := os.OpenFile(filepath.Join(p.Dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("cannot open postgresql.conf: %w", err)
		}
		_, err = f.WriteString(conf)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("cannot write postgresql.conf: %w", err)
		}
	}
	out, err := runAsPostgres(ctx, filepath.Join(bin, "pg_ctl"), "-D", p.Dir, "-l", filepath.Join(p.Dir, "server.log"),
		"-o", fmt.Sprintf("-p %d", port), "-w", "-t", "60", "start").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("cannot start postgres: %w: %s", err, out)
	}
	if err := p.wait(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Postgres) wait(ctx context.Context) error {
	return ready("postgres did not accept connections", func() error {
		c, err := p.Connect(ctx, "postgres")
		if err == nil {
			c.Close(ctx)
		}
		return err
	})
}

// Addr is the cluster's host:port.
func (p *Postgres) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)) }

// URL is a connection URL for user on database db.
func (p *Postgres) URL(user, password, db string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", user, password, p.Addr(), db)
}

// Connect opens a superuser connection to db.
func (p *Postgres) Connect(ctx context.Context, db string) (*pgx.Conn, error) {
	c, err := pgx.Connect(ctx, p.URL("postgres", p.SuperPassword, db))
	if err != nil {
		return nil, fmt.Errorf("cannot connect to postgres: %w", err)
	}
	return c, nil
}

// Exec runs SQL (several statements allowed) as superuser on db.
func (p *Postgres) Exec(ctx context.Context, db, sql string) error {
	c, err := p.Connect(ctx, db)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql); err != nil {
		return fmt.Errorf("cannot run setup SQL: %w", err)
	}
	return nil
}

// Stop shuts the cluster down.
func (p *Postgres) Stop() error {
	out, err := runAsPostgres(context.Background(), filepath.Join(p.Bin, "pg_ctl"), "-D", p.Dir, "-m", "fast", "-w", "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("cannot stop postgres: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// traversable lets the database's system user reach dir when we run as root.
func traversable(dir string) {
	if os.Geteuid() != 0 {
		return
	}
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
			_ = os.Chmod(d, fi.Mode().Perm()|0o011)
		}
	}
}
