package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// FerretDB is a throwaway FerretDB (MongoDB wire protocol, SQLite storage)
// on loopback, with SCRAM on: only its setup user gets in.
type FerretDB struct {
	Dir            string
	Port           int
	User, Password string // the setup user, in the admin database
	proc           *Process
}

// FerretDBBin finds the ferretdb binary scripts/setup builds.
func FerretDBBin() (string, error) {
	if p := os.Getenv("SLUICE_FERRETDB"); p != "" {
		return p, nil
	}
	if root, err := RepoRoot(); err == nil {
		p := filepath.Join(root, ".tools", "bin", "ferretdb")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no ferretdb binary: run scripts/setup (builds FerretDB v1.24.2 into .tools/bin) or set SLUICE_FERRETDB")
}

// StartFerretDB starts FerretDB on port with its data in dir (reusing it),
// creating user with password in admin on first start.
func StartFerretDB(ctx context.Context, dir string, port int, user, password string) (*FerretDB, error) {
	bin, err := FerretDBBin()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create %s: %w", data, err)
	}
	debugPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	f := &FerretDB{Dir: dir, Port: port, User: user, Password: password}
	p, err := StartProcess(dir, "ferretdb", bin, "--handler=sqlite", "--sqlite-url=file:"+data+"/",
		"--state-dir="+dir, "--listen-addr="+f.Addr(), "--debug-addr="+loop(debugPort),
		"--telemetry=disable", "--log-level=warn",
		"--test-enable-new-auth", "--setup-database=admin", "--setup-username="+user, "--setup-password="+password)
	if err != nil {
		return nil, err
	}
	f.proc = p
	if err := p.WaitTCP(ctx, f.Addr()); err != nil {
		return nil, err
	}
	if err := ready("ferretdb did not accept its setup user", func() error { return f.ping(ctx) }); err != nil {
		return nil, err
	}
	return f, nil
}

// Addr is host:port.
func (f *FerretDB) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(f.Port)) }

// URI is a MongoDB URI that logs in as the setup user with SCRAM-SHA-256.
func (f *FerretDB) URI() string {
	return fmt.Sprintf("mongodb://%s:%s@%s/?authSource=admin&authMechanism=SCRAM-SHA-256", f.User, f.Password, f.Addr())
}

// Client connects as the setup user, straight to FerretDB.
func (f *FerretDB) Client() (*mongo.Client, error) {
	return mongo.Connect(options.Client().ApplyURI(f.URI()).SetServerSelectionTimeout(5 * time.Second))
}

func (f *FerretDB) ping(ctx context.Context) error {
	c, err := f.Client()
	if err != nil {
		return err
	}
	defer c.Disconnect(context.WithoutCancel(ctx))
	return c.Database("admin").RunCommand(ctx, bson.D{{Key: "ping", Value: 1}}).Err()
}

// Stop shuts the server down.
func (f *FerretDB) Stop() error {
	if f.proc == nil {
		return nil
	}
	return f.proc.StopWith(syscall.SIGTERM)
}
