package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"

	"github.com/sluicedb/sluice/config"
	"github.com/sluicedb/sluice/connector"
	"github.com/sluicedb/sluice/devstack"
	"github.com/sluicedb/sluice/envoy"
	"github.com/sluicedb/sluice/token"
)

func connect(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flags("connect", stderr)
	gateway := fs.String("gateway", getenv("SLUICE_GATEWAY", "127.0.0.1:10000"), "Envoy tunnel listener host:port")
	target := fs.String("target", "", "target name")
	listen := fs.String("listen", "127.0.0.1:5432", "local address for the agent's client")
	ca := fs.String("ca", getenv("SLUICE_CA", ""), "CA certificate of the gateway (default: system roots)")
	tok := fs.String("token", "", "bearer token (default: $SLUICE_TOKEN)")
	tokFile := fs.String("token-file", getenv("SLUICE_TOKEN_FILE", ""), "file holding the bearer token, read per connection")
	protocol := fs.String("protocol", "", "target protocol, postgres, mysql or mongodb (default: as the gateway names it)")
	localTLS := fs.Bool("local-tls", true, "answer a PostgreSQL client's SSLRequest with TLS at this port (a certificate made at start unless --local-cert is given); false: answer 'N'")
	localCert := fs.String("local-cert", "", "certificate for local TLS (PEM), with --local-key")
	localKey := fs.String("local-key", "", "key for local TLS (PEM)")
	newLogger := logFlags(fs, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *target == "" {
		fmt.Fprintln(stderr, "sluice connect: --target is required")
		return ErrUsage
	}
	src := tokenSource(*tok, *tokFile)
	switch *protocol {
	case "", "postgres", "mysql", "mongodb":
	default:
		fmt.Fprintf(stderr, "sluice connect: --protocol %q: want postgres, mysql or mongodb\n", *protocol)
		return ErrUsage
	}
	var tlsCfg *tls.Config
	if *localTLS {
		var err error
		if tlsCfg, err = localTLSConfig(*localCert, *localKey); err != nil {
			return err
		}
	}
	log := newLogger()
	c, err := connector.New(connector.Config{Gateway: *gateway, Target: *target, Protocol: *protocol, CAFile: *ca,
		LocalTLS: tlsCfg, Token: src, Logger: log})
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", *listen, err)
	}
	log.Info("sluice connect listening", "addr", l.Addr().String(), "target", *target, "gateway", *gateway)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return c.Serve(ctx, l)
}

// tokenSource is the agent's token: a file read per connection, a token
// given, or $SLUICE_TOKEN.
func tokenSource(tok, tokFile string) connector.TokenSource {
	switch {
	case tokFile != "":
		return connector.FileToken(tokFile)
	case tok != "":
		return connector.StaticToken(tok)
	}
	return connector.StaticToken(os.Getenv("SLUICE_TOKEN"))
}

// localTLSConfig is the connector's local TLS: from files, or made now.
func localTLSConfig(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return connector.EphemeralTLS()
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("cannot load local TLS certificate: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

func envoyCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "bootstrap" {
		fmt.Fprintln(stderr, "usage: sluice envoy bootstrap --config FILE [--out FILE]")
		return ErrUsage
	}
	fs := flags("envoy bootstrap", stderr)
	cfgPath := fs.String("config", getenv("SLUICE_CONFIG", "sluice.yaml"), "config file")
	out := fs.String("out", "", "write here instead of standard output")
	xds := fs.Bool("xds", false, "a minimal bootstrap that takes listeners, routes, clusters and certificates from sluice serve's ADS")
	node := fs.String("node", "sluice-envoy", "with --xds: this Envoy's node id")
	admin := fs.String("admin", "", "with --xds: admin address (default: the config's)")
	listen := fs.String("listen", "", "with --xds: this Envoy's tunnel listener (default: the config's)")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	c, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	var b *bootstrapv3.Bootstrap
	if *xds {
		b, err = envoy.XDSBootstrap(c, *node, *admin, *listen)
	} else {
		b, err = envoy.Bootstrap(c)
	}
	if err != nil {
		return err
	}
	js, err := envoy.JSON(b)
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = stdout.Write(js)
		return err
	}
	if err := os.WriteFile(*out, js, 0o644); err != nil {
		return fmt.Errorf("cannot write bootstrap: %w", err)
	}
	return nil
}

func initCmd(args []string, stdout, stderr io.Writer) error {
	fs := flags("init", stderr)
	pg := fs.String("postgres", "127.0.0.1:5432", "address of the demo PostgreSQL target")
	listen := fs.String("listen", "127.0.0.1:10000", "Envoy tunnel listener")
	admin := fs.String("admin", "127.0.0.1:9901", "Envoy admin listener")
	ep := fs.String("extproc", "127.0.0.1:9001", "sluice serve gRPC listener")
	epAddr := fs.String("extproc-address", "", "address Envoy uses to reach sluice serve (default: --extproc)")
	appr := fs.String("approvals", "127.0.0.1:9443", "approvals API and page (HTTPS); empty: statements needing approval are refused")
	mongoAddr := fs.String("mongodb", "", "address of a MongoDB (FerretDB) demo target, demo-mongo (default: none)")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, "usage: sluice init DIR [flags]")
		return ErrUsage
	}
	dir := args[0]
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	path, err := devstack.Init(dir, devstack.InitOptions{
		PostgresAddr: *pg, FerretDBAddr: *mongoAddr, EnvoyListen: *listen, EnvoyAdmin: *admin, ExtProc: *ep, ExtProcAddress: *epAddr, Approvals: *appr,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", path)
	return nil
}

func tokenCmd(args []string, stdout, stderr io.Writer) error {
	fs := flags("token", stderr)
	cfgPath := fs.String("config", getenv("SLUICE_CONFIG", "sluice.yaml"), "config file (issuer, audience)")
	key := fs.String("key", "", "signing key (default: keys/signing.jwk beside the config)")
	sub := fs.String("sub", "", "agent name (sub claim)")
	groups := fs.String("groups", "", "comma-separated groups")
	act := fs.String("act", "", "the human the agent acts for (act.sub)")
	ttl := fs.Duration("ttl", 15*time.Minute, "lifetime")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *sub == "" {
		fmt.Fprintln(stderr, "sluice token: --sub is required")
		return ErrUsage
	}
	c, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	k := *key
	if k == "" {
		k = c.Path(devstack.SigningKeyFile)
	}
	var gs []string
	if *groups != "" {
		gs = strings.Split(*groups, ",")
	}
	tok, err := token.Mint(k, token.Claims{Issuer: c.JWT.Issuer, Audience: c.JWT.Audiences, Subject: *sub, Groups: gs, ActFor: *act, TTL: *ttl})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

func demo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("demo", stderr)
	dir := fs.String("dir", ".sluice/demo", "working folder")
	debugAddr := fs.String("debug-addr", "", "have sluice serve expose Go's pprof handlers here (loopback only, for profiling)")
	newLogger := logFlags(fs, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find own binary: %w", err)
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var serveArgs []string
	if *debugAddr != "" {
		serveArgs = []string{"--debug-addr", *debugAddr}
	}
	st, err := devstack.Up(ctx, devstack.Options{Dir: abs, Binary: self, Logger: newLogger(), ServeArgs: serveArgs})
	if err != nil {
		return err
	}
	defer st.Close()
	fmt.Fprintf(stdout, `sluice demo is running (logs in %[1]s).

  agent connection:  psql '%[2]s'
                     mysql -h 127.0.0.1 -P %[6]s sluice_demo
                     python3 -c "import pymongo; print(pymongo.MongoClient('%[8]s').sluice_demo.customers.find_one())"
                     (no database password or user: sluice logs in for the agent)

Try:
  SELECT name FROM customers LIMIT 3;          -- allowed (policy analysts-read)
  DROP TABLE customers;                        -- refused (policy no-ddl), SQLSTATE 42501
  SELECT name, email, ssn FROM customers LIMIT 3;  -- pii columns come back masked
  SELECT id FROM customers WHERE email LIKE 'c%%'; -- refused: a masked column used as a filter
  SELECT pg_read_file('/etc/passwd');          -- refused (policy no-admin)

Envoy: %[3]s (bootstrap %[1]s/envoy.json)   sluice serve: %[4]s
Policies: %[5]s — edit them and send SIGHUP to sluice serve to reload.
Approvals: https://%[7]s/ — sluice approvals list --config %[1]s/config/sluice.yaml
Audit: sluice sessions list --config %[1]s/config/sluice.yaml (then show, replay; sluice audit verify)
Press Ctrl-C to stop.
`, abs, st.AgentURL(""), st.Config.Envoy.Listen, st.Config.ExtProc.Listen, st.Config.Path(st.Config.Policies),
		strings.TrimPrefix(st.MySQLAddr, "127.0.0.1:"), st.Config.Approvals.Listen, st.MongoURI(""))
	<-ctx.Done()
	return nil
}
