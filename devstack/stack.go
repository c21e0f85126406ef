package devstack

import (
	"cmp"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/config"
	"github.com/sluicedb/sluice/envoy"
	"github.com/sluicedb/sluice/pki"
	"github.com/sluicedb/sluice/token"
)

//go:embed demo.sql
var demoSQL string

// demoReaderSQL creates the read-only user; docker-compose.yaml runs it too.
//
//go:embed demo-reader.sql
var demoReaderSQL string

//go:embed demo-mysql.sql
var demoMySQL string

// Demo database names and the database users sluice logs in as for agents
// (agents themselves hold no database password): migrators as the data's
// owner, analysts as a read-only user.
const (
	DemoTarget     = "demo"
	DemoDatabase   = "sluice_demo"
	AgentDBUser    = "agent"
	AgentDBPass    = "agent-dev-password"
	ReaderDBUser   = "sluice_reader"
	ReaderDBPass   = "reader-dev-password"
	DemoIssuer     = "https://sluice.local"
	DemoAudience   = "sluice"
	SigningKeyFile = "keys/signing.jwk"
)

// InitOptions shape a generated configuration folder.
type InitOptions struct {
	PostgresAddr string // the demo target's address
	MariaDBAddr  string // when set, a MySQL demo target too
	FerretDBAddr string // when set, a MongoDB demo target too
	Database     string // the demo target's database (default sluice_demo)
	EnvoyListen  string
	EnvoyAdmin   string
	ExtProc      string
	// ExtProcAddress is how Envoy reaches sluice when that differs from
	// ExtProc (e.g. a service name under docker compose).
	ExtProcAddress string
	// Approvals is where sluice serves the approvals API and page.
	Approvals string
}

// Init writes a complete local configuration into dir: sluice.yaml, a CA and
// gateway certificate, a token signing key with its JWKS, and the default
// policies. It returns the config file's path.
func Init(dir string, o InitOptions) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, "sluice.yaml")); err == nil {
		return "", fmt.Errorf("%s already holds a sluice.yaml", dir)
	}
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o755); err != nil {
		return "", fmt.Errorf("cannot create %s: %w", dir, err)
	}
	if _, err := pki.Generate(filepath.Join(dir, "tls"), []string{"localhost", "127.0.0.1", "envoy"}, 365*24*time.Hour); err != nil {
		return "", err
	}
	if err := token.GenerateKey(filepath.Join(dir, SigningKeyFile), filepath.Join(dir, "keys/jwks.json")); err != nil {
		return "", err
	}
	if err := cedar.WriteDefaults(filepath.Join(dir, "policies")); err != nil {
		return "", err
	}
	for file, pw := range map[string]string{"keys/db-agent.password": AgentDBPass, "keys/db-reader.password": ReaderDBPass} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(pw+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("cannot write database password: %w", err)
		}
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if err := os.WriteFile(filepath.Join(dir, "keys/masking.key"), []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("cannot write masking key: %w", err)
	}
	// Least-privileged first: an agent in both groups logs in as the reader.
	logins := []config.Credential{
		{Groups: []string{"analysts"}, User: ReaderDBUser, PasswordFile: "keys/db-reader.password"},
		{Groups: []string{"migrators"}, User: AgentDBUser, PasswordFile: "keys/db-agent.password"},
	}
	c := &config.Config{
		Envoy: config.Envoy{
			Listen: o.EnvoyListen, Admin: o.EnvoyAdmin,
			TLSCert: "tls/gateway.crt", TLSKey: "tls/gateway.key",
			IdleTimeout: config.Duration(time.Hour),
		},
		ExtProc:        config.ExtProc{Listen: o.ExtProc, Address: o.ExtProcAddress},
		JWT:            config.JWT{Issuer: DemoIssuer, Audiences: []string{DemoAudience}, JWKSFile: "keys/jwks.json", GroupsClaim: "groups"},
		Policies:       "policies",
		MaskingKeyFile: "keys/masking.key",
		// Held statements wait up to 4 minutes for a human (Envoy's idle
		// timeout, an hour, stays above it).
		Approvals: config.Approvals{Listen: o.Approvals, Store: "approvals.db", Timeout: config.Duration(4 * time.Minute),
			AsyncGroups: []string{"async-agents"}},
		// A runaway agent is stopped early: statements end after a minute,
		// results past 100,000 rows are cut, and three statements over 10 s
		// within 5 minutes pause the session for a human.
		Guardrails: config.Guardrails{
			StatementTimeout: config.Duration(time.Minute), MaxRows: 100000,
			Pause: config.Pause{SlowerThan: config.Duration(10 * time.Second), After: 3, Within: config.Duration(5 * time.Minute)},
		},
		Targets: []config.Target{{
			Name: DemoTarget, Protocol: "postgres", Address: o.PostgresAddr, Database: cmp.Or(o.Database, DemoDatabase),
			Tags: map[string]string{"env": "dev"},
			// A local demo keeps the catalog reader's credentials here; a real
			// deployment writes ${VAR} and sets it in sluice's environment.
			CatalogURL:  fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", AgentDBUser, AgentDBPass, o.PostgresAddr, cmp.Or(o.Database, DemoDatabase)),
			Credentials: logins,
		}, {
			// The same database with content detectors on: emails, cards,
			// keys… found in any text column are masked too.
			Name: DemoTarget + "-scrubbed", Protocol: "postgres", Address: o.PostgresAddr, Database: cmp.Or(o.Database, DemoDatabase),
			Tags:        map[string]string{"env": "dev", "detectors": "on"},
			CatalogURL:  fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", AgentDBUser, AgentDBPass, o.PostgresAddr, cmp.Or(o.Database, DemoDatabase)),
			Credentials: logins,
		}},
	}
	if o.MariaDBAddr != "" {
		c.Targets = append(c.Targets, config.Target{
			Name: DemoTarget + "-mysql", Protocol: "mysql", Address: o.MariaDBAddr, Database: DemoDatabase,
			Tags:        map[string]string{"env": "dev"},
			CatalogURL:  fmt.Sprintf("%s:%s@tcp(%s)/%s", AgentDBUser, AgentDBPass, o.MariaDBAddr, DemoDatabase),
			Credentials: logins,
		})
	}
	if o.FerretDBAddr != "" {
		// One login for every agent: FerretDB's setup user.
		c.Targets = append(c.Targets, config.Target{
			Name: DemoMongoTarget, Protocol: "mongodb", Address: o.FerretDBAddr, Database: DemoDatabase,
			Tags:        map[string]string{"env": "dev"},
			Credentials: []config.Credential{{User: AgentDBUser, PasswordFile: "keys/db-agent.password"}},
		})
	}
	path := filepath.Join(dir, "sluice.yaml")
	if err := c.Write(path); err != nil {
		return "", err
	}
	return path, nil
}

// Options configure Up.
type Options struct {
	Dir    string // working folder: cluster, config, logs
	Binary string // the sluice binary to run serve and connect
	Logger *slog.Logger
	// NoConnector skips `sluice connect` (tests may run their own).
	NoConnector bool
	// ServeArgs are extra flags for `sluice serve`.
	ServeArgs []string
	// ExtraPolicies are added to the default policy folder (name → text).
	ExtraPolicies map[string]string
}

// Stack is a running local data path.
type Stack struct {
	Dir         string
	ConfigPath  string
	Config      *config.Config
	PG          *Postgres
	Maria       *MariaDB
	Mongo       *FerretDB
	Envoy       *Process
	Serve       *Process
	Connect     *Process
	ConnectAddr string // where the agent's client connects
	MySQLAddr   string // where the agent's MySQL client connects
	MongoAddr   string // where the agent's MongoDB driver connects
	TokenFile   string
	Binary      string
	EnvoyBin    string
	ServeArgs   []string
	// Env is added to the environment of the sluice processes (serve,
	// connect, the bench's floor) started after Up, e.g. GOMAXPROCS.
	Env []string
	// EnvoyArgs are added to the command line of the Envoys started after
	// Up (e.g. --concurrency 1).
	EnvoyArgs []string
	bootstrap string
	extra     []*Process
}

func ports(n int) ([]int, error) {
	out := make([]int, n)
	for i := range out {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}

func loop(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// Up starts PostgreSQL with demo data, generates the configuration, renders
// Envoy's bootstrap with `sluice envoy bootstrap`, and starts sluice serve,
// Envoy and sluice connect.
func Up(ctx context.Context, o Options) (_ *Stack, err error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	envoyBin, err := EnvoyBin()
	if err != nil {
		return nil, err
	}
	p, err := ports(10)
	if err != nil {
		return nil, err
	}
	s := &Stack{Dir: o.Dir, Binary: o.Binary, EnvoyBin: envoyBin, ServeArgs: o.ServeArgs}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	o.Logger.Info("starting postgres", "port", p[0])
	if s.PG, err = StartPostgres(ctx, filepath.Join(o.Dir, "pg"), p[0]); err != nil {
		return nil, err
	}
	if err := SeedDemo(ctx, s.PG); err != nil {
		return nil, err
	}
	o.Logger.Info("starting mariadb", "port", p[6])
	if s.Maria, err = StartMariaDB(ctx, filepath.Join(o.Dir, "mariadb"), p[6]); err != nil {
		return nil, err
	}
	if err := SeedDemoMySQL(ctx, s.Maria); err != nil {
		return nil, err
	}
	o.Logger.Info("starting ferretdb", "port", p[8])
	if s.Mongo, err = StartFerretDB(ctx, filepath.Join(o.Dir, "ferretdb"), p[8], AgentDBUser, AgentDBPass); err != nil {
		return nil, err
	}
	if err := SeedDemoMongo(ctx, s.Mongo); err != nil {
		return nil, err
	}
	cfgDir := filepath.Join(o.Dir, "config")
	if s.ConfigPath, err = Init(cfgDir, InitOptions{
		PostgresAddr: s.PG.Addr(), MariaDBAddr: s.Maria.Addr(), FerretDBAddr: s.Mongo.Addr(), EnvoyListen: loop(p[1]), EnvoyAdmin: loop(p[2]), ExtProc: loop(p[3]), Approvals: loop(p[7]),
	}); err != nil {
		return nil, err
	}
	if s.Config, err = config.Load(s.ConfigPath); err != nil {
		return nil, err
	}
	for name, text := range o.ExtraPolicies {
		if err := os.WriteFile(filepath.Join(s.Config.Path(s.Config.Policies), name), []byte(text), 0o644); err != nil {
			return nil, fmt.Errorf("cannot write policy %s: %w", name, err)
		}
	}
	if err := s.StartServe(ctx); err != nil {
		return nil, err
	}
	if err := s.StartEnvoy(ctx); err != nil {
		return nil, err
	}
	tok, err := s.MintToken("demo-agent", []string{"analysts"}, time.Hour)
	if err != nil {
		return nil, err
	}
	s.TokenFile = filepath.Join(o.Dir, "agent.token")
	if err := os.WriteFile(s.TokenFile, []byte(tok+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("cannot write token: %w", err)
	}
	if !o.NoConnector {
		s.ConnectAddr = loop(p[4])
		if s.Connect, err = s.StartConnect(ctx, "connect", DemoTarget, s.ConnectAddr, s.TokenFile); err != nil {
			return nil, err
		}
		s.MySQLAddr = loop(p[5])
		if _, err = s.StartConnectVia(ctx, "connect-mysql", s.Config.Envoy.Listen, DemoTarget+"-mysql", s.MySQLAddr, s.TokenFile); err != nil {
			return nil, err
		}
		s.MongoAddr = loop(p[9])
		if _, err = s.StartConnectVia(ctx, "connect-mongo", s.Config.Envoy.Listen, DemoMongoTarget, s.MongoAddr, s.TokenFile); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// SeedDemo creates the agent's role and the demo database.
func SeedDemo(ctx context.Context, pg *Postgres) error {
	err := pg.Exec(ctx, "postgres", fmt.Sprintf(`DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '%[1]s') THEN
    CREATE ROLE %[1]s LOGIN PASSWORD '%[2]s';
  END IF; END $$;`, AgentDBUser, AgentDBPass))
	if err != nil {
		return err
	}
	c, err := pg.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	var exists bool
	err = c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", DemoDatabase).Scan(&exists)
	if err == nil && !exists {
		_, err = c.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s OWNER %s", DemoDatabase, AgentDBUser))
	}
	c.Close(ctx)
	if err != nil {
		return fmt.Errorf("cannot create demo database: %w", err)
	}
	// The agent's role owns the data, so the database alone would let it
	// drop tables: only sluice stands in the way.
	if err := pg.Exec(ctx, DemoDatabase, "SET ROLE "+AgentDBUser+";\n"+demoSQL); err != nil {
		return err
	}
	// Tests also create tables as the superuser: the reader sees those too.
	return pg.Exec(ctx, DemoDatabase, demoReaderSQL+"\nALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT SELECT ON TABLES TO "+ReaderDBUser+";")
}

// SeedDemoMySQL creates the agent's user and the demo database in MariaDB.
// The agent may do anything there: only sluice stands in the way.
func SeedDemoMySQL(ctx context.Context, m *MariaDB) error {
	err := m.Exec(ctx, fmt.Sprintf(`CREATE DATABASE IF NOT EXISTS %[1]s;
CREATE USER IF NOT EXISTS '%[2]s'@'%%' IDENTIFIED BY '%[3]s';
GRANT ALL ON %[1]s.* TO '%[2]s'@'%%';
CREATE USER IF NOT EXISTS '%[4]s'@'%%' IDENTIFIED BY '%[5]s';
GRANT SELECT ON %[1]s.* TO '%[4]s'@'%%';`, DemoDatabase, AgentDBUser, AgentDBPass, ReaderDBUser, ReaderDBPass))
	if err != nil {
		return err
	}
	return m.Exec(ctx, "USE "+DemoDatabase+";\n"+demoMySQL)
}

// MySQLDSN is a go-sql-driver DSN for the agent through addr: no password,
// since sluice logs in to the database for the agent.
func (s *Stack) MySQLDSN(addr string) string {
	return fmt.Sprintf("%s@tcp(%s)/%s?maxAllowedPacket=0", AgentDBUser, addr, DemoDatabase)
}

// MintToken signs an agent token with the local key.
func (s *Stack) MintToken(sub string, groups []string, ttl time.Duration) (string, error) {
	return token.Mint(s.Config.Path(SigningKeyFile), token.Claims{
		Issuer: DemoIssuer, Audience: []string{DemoAudience}, Subject: sub, Groups: groups, TTL: ttl,
	})
}

// StartServe starts `sluice serve` and waits for its gRPC port.
func (s *Stack) StartServe(ctx context.Context) (err error) {
	s.Serve, err = StartProcess(s.Dir, "serve", s.Binary, append([]string{"serve", "--config", s.ConfigPath}, s.ServeArgs...)...)
	if err != nil {
		return err
	}
	return s.Serve.WaitTCP(ctx, s.Config.ExtProc.Listen)
}

// StartEnvoy renders the bootstrap with the sluice binary and starts Envoy.
func (s *Stack) StartEnvoy(ctx context.Context) error {
	s.bootstrap = filepath.Join(s.Dir, "envoy.json")
	gen, err := StartProcess(s.Dir, "bootstrap", s.Binary, "envoy", "bootstrap", "--config", s.ConfigPath, "--out", s.bootstrap)
	if err != nil {
		return err
	}
	if err := gen.Wait(); err != nil {
		b, _ := os.ReadFile(gen.LogPath)
		return fmt.Errorf("cannot render envoy bootstrap: %w: %s", err, b)
	}
	s.Envoy, err = StartProcess(s.Dir, "envoy", s.EnvoyBin, "-c", s.bootstrap, "--disable-hot-restart", "-l", "info")
	if err != nil {
		return err
	}
	return s.Envoy.WaitTCP(ctx, s.Config.Envoy.Listen)
}

// StartConnect starts a `sluice connect` for target on listen.
func (s *Stack) StartConnect(ctx context.Context, name, target, listen, tokenFile string) (*Process, error) {
	args := []string{"connect", "--gateway", s.Config.Envoy.Listen, "--target", target, "--listen", listen,
		"--ca", s.Config.Path("tls/ca.crt")}
	if tokenFile != "" {
		args = append(args, "--token-file", tokenFile)
	} else {
		args = append(args, "--token", "")
	}
	p, err := StartProcess(s.Dir, name, s.Binary, args...)
	if err != nil {
		return nil, err
	}
	return p, p.WaitTCP(ctx, listen)
}

// AgentURL is the URL an agent's client uses through the connector. It
// holds no password: sluice logs in to the database for the agent.
func (s *Stack) AgentURL(addr string) string {
	if addr == "" {
		addr = s.ConnectAddr
	}
	return fmt.Sprintf("postgres://%s@%s/%s", AgentDBUser, addr, DemoDatabase)
}

// StartServeWith starts another sluice serve from the stack's configuration
// as changed by edit (written beside it as name.yaml, so relative paths
// hold), on its own ext_proc and approvals ports; it stops with the stack.
// It returns that configuration (ExtProc.Listen is for StartEnvoyWith) and
// its path.
func (s *Stack) StartServeWith(ctx context.Context, name string, edit func(*config.Config)) (*config.Config, string, error) {
	p, err := ports(2)
	if err != nil {
		return nil, "", err
	}
	c, err := config.Load(s.ConfigPath)
	if err != nil {
		return nil, "", err
	}
	c.ExtProc.Listen, c.ExtProc.Address = loop(p[0]), loop(p[0])
	if c.Approvals.Listen != "" {
		c.Approvals.Listen, c.Approvals.PageURL = loop(p[1]), ""
	}
	edit(c)
	path := filepath.Join(filepath.Dir(s.ConfigPath), name+".yaml")
	if err := c.Write(path); err != nil {
		return nil, "", err
	}
	proc, err := StartProcessEnv(s.Dir, name, s.Env, s.Binary, append([]string{"serve", "--config", path}, s.ServeArgs...)...)
	if err != nil {
		return nil, "", err
	}
	s.extra = append(s.extra, proc)
	if err := proc.WaitTCP(ctx, c.ExtProc.Listen); err != nil {
		return nil, "", err
	}
	if c.Approvals.Listen != "" {
		// The approvals API starts just before the ext_proc port opens.
		if err := proc.WaitTCP(ctx, c.Approvals.Listen); err != nil {
			return nil, "", err
		}
	}
	return c, path, nil
}

// Adopt makes the stack stop p when it closes.
func (s *Stack) Adopt(p *Process) { s.extra = append(s.extra, p) }

// Close stops everything it started.
func (s *Stack) Close() error {
	var errs []error
	for _, p := range append(s.extra, s.Connect, s.Envoy, s.Serve) {
		if p != nil {
			errs = append(errs, p.Stop())
		}
	}
	if s.PG != nil {
		errs = append(errs, s.PG.Stop())
	}
	if s.Maria != nil {
		errs = append(errs, s.Maria.Stop())
	}
	if s.Mongo != nil {
		errs = append(errs, s.Mongo.Stop())
	}
	return errors.Join(errs...)
}

// StartBaseline starts a second Envoy from the same configuration but without
// the ext_proc filter and returns its tunnel listener. It is for measuring
// sluice's own cost only.
func (s *Stack) StartBaseline(ctx context.Context) (string, error) {
	return s.startEnvoyFrom(ctx, "envoy-baseline", s.Config, envoy.BaselineBootstrap)
}

// StartEnvoyWith starts another gateway Envoy, on its own ports, from the
// stack's configuration as changed by edit (e.g. another JWKS source). It
// uses the running sluice serve.
func (s *Stack) StartEnvoyWith(ctx context.Context, name string, edit func(*config.Config)) (string, error) {
	return s.StartEnvoyRendered(ctx, name, edit, envoy.Bootstrap)
}

// StartEnvoyRendered is StartEnvoyWith with another rendering of the
// bootstrap (`sluice bench` measures envoy.Untuned with it).
func (s *Stack) StartEnvoyRendered(ctx context.Context, name string, edit func(*config.Config), render func(*config.Config) (*bootstrapv3.Bootstrap, error)) (string, error) {
	c := *s.Config
	c.JWT.Audiences = append([]string(nil), c.JWT.Audiences...)
	edit(&c)
	return s.startEnvoyFrom(ctx, name, &c, render)
}

func (s *Stack) startEnvoyFrom(ctx context.Context, name string, base *config.Config, render func(*config.Config) (*bootstrapv3.Bootstrap, error)) (string, error) {
	p, err := ports(2)
	if err != nil {
		return "", err
	}
	c := *base
	c.Envoy.Listen, c.Envoy.Admin = loop(p[0]), loop(p[1])
	b, err := render(&c)
	if err != nil {
		return "", err
	}
	js, err := envoy.JSON(b)
	if err != nil {
		return "", err
	}
	path := filepath.Join(s.Dir, name+".json")
	if err := os.WriteFile(path, js, 0o644); err != nil {
		return "", fmt.Errorf("cannot write %s bootstrap: %w", name, err)
	}
	e, err := StartProcess(s.Dir, name, s.EnvoyBin, append([]string{"-c", path, "--disable-hot-restart", "-l", "warning"}, s.EnvoyArgs...)...)
	if err != nil {
		return "", err
	}
	s.extra = append(s.extra, e)
	if err := e.WaitTCP(ctx, c.Envoy.Listen); err != nil {
		return "", err
	}
	return c.Envoy.Listen, nil
}

// StartXDSEnvoy starts an Envoy from `sluice envoy bootstrap --xds` with its
// own node id, admin port and tunnel listener, and waits for the listener
// that sluice serves it over ADS.
func (s *Stack) StartXDSEnvoy(ctx context.Context, node string) (*Process, string, error) {
	p, err := ports(2)
	if err != nil {
		return nil, "", err
	}
	listen := loop(p[1])
	path := filepath.Join(s.Dir, "envoy-"+node+".json")
	gen, err := StartProcess(s.Dir, "bootstrap-"+node, s.Binary, "envoy", "bootstrap", "--xds", "--config", s.ConfigPath,
		"--node", node, "--admin", loop(p[0]), "--listen", listen, "--out", path)
	if err != nil {
		return nil, "", err
	}
	if err := gen.Wait(); err != nil {
		b, _ := os.ReadFile(gen.LogPath)
		return nil, "", fmt.Errorf("cannot render xds bootstrap: %w: %s", err, b)
	}
	e, err := StartProcess(s.Dir, "envoy-"+node, s.EnvoyBin, "-c", path, "--disable-hot-restart", "-l", "info")
	if err != nil {
		return nil, "", err
	}
	s.extra = append(s.extra, e)
	return e, listen, e.WaitTCP(ctx, listen)
}

// StartConnectVia starts `sluice connect` through a given gateway listener.
func (s *Stack) StartConnectVia(ctx context.Context, name, gateway, target, listen, tokenFile string) (*Process, error) {
	p, err := StartProcessEnv(s.Dir, name, s.Env, s.Binary, "connect", "--gateway", gateway, "--target", target, "--listen", listen,
		"--ca", s.Config.Path("tls/ca.crt"), "--token-file", tokenFile)
	if err != nil {
		return nil, err
	}
	s.extra = append(s.extra, p)
	return p, p.WaitTCP(ctx, listen)
}

// StartSluice starts the sluice binary with args and env (besides the
// stack's Env) as process name, and waits for it to listen on addr.
func (s *Stack) StartSluice(ctx context.Context, name, addr string, env []string, args ...string) (*Process, error) {
	p, err := StartProcessEnv(s.Dir, name, append(slices.Clone(s.Env), env...), s.Binary, args...)
	if err != nil {
		return nil, err
	}
	s.extra = append(s.extra, p)
	return p, p.WaitTCP(ctx, addr)
}

// Proc finds a process the stack started, by name.
func (s *Stack) Proc(name string) *Process {
	for _, p := range s.extra {
		if p.Name == name {
			return p
		}
	}
	return nil
}
