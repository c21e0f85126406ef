package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // only served with --debug-addr
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/sluicedb/sluice/approval"
	"github.com/sluicedb/sluice/catalog"
	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/config"
	"github.com/sluicedb/sluice/envoy"
	"github.com/sluicedb/sluice/extproc"
	"github.com/sluicedb/sluice/extproc/mongo"
	"github.com/sluicedb/sluice/extproc/mysql"
	"github.com/sluicedb/sluice/extproc/postgres"
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/guard"
	"github.com/sluicedb/sluice/mask"
	"github.com/sluicedb/sluice/policy"
	"github.com/sluicedb/sluice/telemetry"
)

func loadPolicies(c *config.Config) (*cedar.Set, error) {
	if c.Policies == "" {
		return cedar.Default()
	}
	set, err := cedar.LoadDir(c.Path(c.Policies))
	if err != nil {
		return nil, fmt.Errorf("cannot load policies from %s: %w", c.Path(c.Policies), err)
	}
	return set, nil
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flags("serve", stderr)
	cfgPath := fs.String("config", getenv("SLUICE_CONFIG", "sluice.yaml"), "config file")
	debugAddr := fs.String("debug-addr", "", "serve Go's pprof handlers here (loopback only, for profiling)")
	traceDir := fs.String("trace-dir", "", "write a raw wire trace per tunnel here (debugging and tests only)")
	newLogger := logFlags(fs, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	log := newLogger()
	c, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	set, err := loadPolicies(c)
	if err != nil {
		return err
	}
	var key []byte
	if c.MaskingKeyFile != "" {
		b, err := os.ReadFile(c.Path(c.MaskingKeyFile))
		if err != nil {
			return fmt.Errorf("cannot read masking key: %w", err)
		}
		key = []byte(strings.TrimSpace(string(b)))
	}
	masker := mask.New(key)
	engine := policy.NewEngine(set)
	engine.SetShadow(c.Shadow)
	if c.Shadow {
		log.Warn("policies in shadow mode: refusals are logged, not enforced")
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	stopTelemetry, err := telemetry.Setup(ctx)
	if err != nil {
		return err
	}
	defer func() {
		// The last spans, metrics and logs get a moment to leave; a collector
		// that is gone must not keep sluice from stopping (the exporters
		// would retry for a minute).
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := stopTelemetry(sctx); err != nil {
			log.Warn("telemetry not flushed at shutdown", "err", err)
		}
	}()
	catalogs := map[string]bool{}
	startCatalogs(ctx, c, engine, catalogs, log)
	live := &liveTargets{}
	live.p.Store(c)
	xds := envoy.NewXDS(log)
	if err := xds.Update(c); err != nil {
		return fmt.Errorf("cannot build the xds snapshot: %w", err)
	}
	sessions := &liveSessions{}
	approvals, err := startApprovals(ctx, c, engine, sessions, log)
	if err != nil {
		return err
	}
	instance := newInstanceID()
	trail, err := openAudit(ctx, c, instance, os.Stdout, log)
	if err != nil {
		return err
	}
	defer trail.close()
	var approver extproc.Approver
	var pauses guard.PauseStore
	if approvals != nil {
		approver, pauses = approvals, approvals.Store()
	}
	// A MongoDB driver continues a cursor on any of its connections.
	cursors := mongo.NewCursors()
	srv := extproc.NewServer(extproc.Config{
		Logger:  log,
		Targets: live,
		Policy:  engine,
		Protocols: map[string]extproc.NewSessionFunc{
			"postgres": func(t session.Target, auth *policy.Authorizer, appr session.Approvals, obs session.Observer, l *slog.Logger) session.Session {
				return postgres.NewSession(postgres.Config{Target: t, Authorizer: auth, Logger: l, Masker: masker, Approvals: appr, Observer: obs})
			},
			"mysql": func(t session.Target, auth *policy.Authorizer, appr session.Approvals, obs session.Observer, l *slog.Logger) session.Session {
				return mysql.NewSession(mysql.Config{Target: t, Authorizer: auth, Logger: l, Masker: masker, Approvals: appr, Observer: obs})
			},
			"mongodb": func(t session.Target, auth *policy.Authorizer, appr session.Approvals, obs session.Observer, l *slog.Logger) session.Session {
				return mongo.NewSession(mongo.Config{Target: t, Decider: auth, Logger: l, Masker: masker, Approvals: appr, Observer: obs,
					Cursors: cursors, Owner: auth.Owner()})
			},
		},
		Approvals:     approver,
		AsyncGroups:   c.Approvals.AsyncGroups,
		Audit:         trail.sink,
		AuditHealth:   trail.health,
		AuditFailOpen: c.Audit.FailOpen,
		AuditSync:     trail.sync,
		Instance:      instance,
		Pauses:        pauses,
		GroupsKey:     c.JWT.GroupsClaim,
		Audiences:     c.JWT.Audiences,
		MaxTTL:        time.Duration(c.JWT.MaxTTL),
		ClockSkew:     time.Duration(c.JWT.ClockSkew),
		TraceDir:      *traceDir,
	})
	sessions.srv.Store(srv)

	g := grpc.NewServer(extProcServerOptions()...)
	extprocv3.RegisterExternalProcessorServer(g, srv)
	// The same server answers ADS, for Envoys started with
	// `sluice envoy bootstrap --xds`.
	xds.Register(ctx, g)
	go watchConfig(ctx, *cfgPath, c, func(next *config.Config) error {
		if err := xds.Update(next); err != nil {
			return err
		}
		live.p.Store(next)
		startCatalogs(ctx, next, engine, catalogs, log)
		return nil
	}, log)
	l, err := listenExtProc(c.ExtProc.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", c.ExtProc.Listen, err)
	}
	log.Info("sluice serving ext_proc", "addr", l.Addr().String(), "targets", len(c.Targets), "policies", len(set.IDs))

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go watchPolicies(ctx, c, engine, hup, log)
	if *debugAddr != "" {
		go func() {
			if err := http.ListenAndServe(*debugAddr, nil); err != nil {
				log.Error("debug listener failed", "err", err)
			}
		}()
	}
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("cannot serve: %w", err)
	case <-ctx.Done():
	}
	// Held statements end with a clear error (their requests stay pending);
	// give those errors a moment to reach the clients.
	srv.Shutdown()
	time.Sleep(300 * time.Millisecond)
	// Tunnels can live for hours: give them a moment, then cut them. Envoy
	// resets the cut tunnels, so nothing passes unchecked.
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		g.Stop()
	}
	srv.Close() // the last sessions' audit events, before the sinks close
	log.Info("sluice stopped")
	return nil
}

// watchPolicies reloads the policy folder on SIGHUP and when its files
// change. An invalid new set is refused and the old one stays in force.
func watchPolicies(ctx context.Context, c *config.Config, engine *policy.Engine, hup <-chan os.Signal, log *slog.Logger) {
	if c.Policies == "" {
		return
	}
	dir := c.Path(c.Policies)
	last := folderStamp(dir)
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		case <-tick.C:
			stamp := folderStamp(dir)
			if stamp == last {
				continue
			}
			last = stamp
		}
		next, err := loadPolicies(c)
		if err != nil {
			log.Error("policy reload refused; keeping the current policies", "err", err)
			continue
		}
		engine.Swap(next)
		log.Info("policies reloaded", "policies", len(next.IDs))
	}
}

// folderStamp changes whenever a file in dir is added, removed or modified.
func folderStamp(dir string) string {
	entries, _ := os.ReadDir(dir)
	var b strings.Builder
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", e.Name(), fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return b.String()
}

// liveTargets is the current configuration's targets.
type liveTargets struct{ p atomic.Pointer[config.Config] }

func (l *liveTargets) Target(name string) (session.Target, bool) { return l.p.Load().Target(name) }

// startCatalogs starts a catalog source for each target that has none yet.
func startCatalogs(ctx context.Context, c *config.Config, engine *policy.Engine, started map[string]bool, log *slog.Logger) {
	for _, t := range c.Targets {
		if t.CatalogURL == "" || started[t.Name] {
			continue
		}
		started[t.Name] = true
		load := catalog.Postgres(os.ExpandEnv(t.CatalogURL))
		if t.Protocol == "mysql" {
			load = catalog.MySQL(os.ExpandEnv(t.CatalogURL))
		}
		src := catalog.NewSource(t.Name, load, log)
		engine.SetCatalog(t.Name, src)
		go src.Run(ctx, 30*time.Second)
	}
}

// watchConfig applies changes to the config file (and to the certificate
// it names) without a restart. An invalid file is refused with a clear
// error and everything stays as it was.
func watchConfig(ctx context.Context, path string, c *config.Config, apply func(*config.Config) error, log *slog.Logger) {
	stamp := func(c *config.Config) string {
		return fileStamp(path) + fileStamp(c.Path(c.Envoy.TLSCert)) + fileStamp(c.Path(c.Envoy.TLSKey))
	}
	last := stamp(c)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if s := stamp(c); s == last {
			continue
		} else {
			last = s
		}
		next, err := config.Load(path)
		if err == nil {
			err = apply(next)
		}
		if err != nil {
			log.Error("config change refused; keeping the current configuration", "err", err)
			continue
		}
		c = next
		last = stamp(c)
		log.Info("configuration applied", "targets", len(c.Targets))
	}
}

func fileStamp(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return path + ":missing;"
	}
	return fmt.Sprintf("%s:%d:%d;", path, fi.Size(), fi.ModTime().UnixNano())
}

// liveSessions lets the approvals API, started before the ext_proc server,
// pause and resume its sessions.
type liveSessions struct {
	srv atomic.Pointer[extproc.Server]
}

func (l *liveSessions) server() (*extproc.Server, error) {
	if s := l.srv.Load(); s != nil {
		return s, nil
	}
	return nil, approval.ErrNoSession
}

func (l *liveSessions) SessionTarget(id string) (string, string, string, error) {
	s, err := l.server()
	if err != nil {
		return "", "", "", err
	}
	return s.SessionTarget(id)
}

func (l *liveSessions) Pause(id, by, reason string) error {
	s, err := l.server()
	if err != nil {
		return err
	}
	return s.Pause(id, by, reason)
}

func (l *liveSessions) Resume(ctx context.Context, id, by string) error {
	s, err := l.server()
	if err != nil {
		return err
	}
	return s.Resume(ctx, id, by)
}

// newInstanceID names this sluice process in the audit trail.
func newInstanceID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", hostname(), os.Getpid(), hex.EncodeToString(b[:]))
}

// extProcServerOptions tune the gRPC server for ext_proc's traffic: many
// long streams of small messages, each a round trip Envoy waits for.
func extProcServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		// Envoy pings every 20s on the ext_proc cluster; a stricter policy
		// would make gRPC answer GOAWAY "too_many_pings" and kill every tunnel.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
		// Fixed flow-control windows: setting them turns off grpc-go's BDP
		// estimator, which sends a PING (that Envoy answers) per burst of
		// data. A tunnel's chunks are at most Envoy's buffer (64 KiB) a
		// message; 1 MiB per stream and 16 MiB per connection never stall.
		grpc.InitialWindowSize(1 << 20),
		grpc.InitialConnWindowSize(16 << 20),
		grpc.ReadBufferSize(64 << 10),
		grpc.WriteBufferSize(64 << 10),
	}
}

// listenExtProc listens on host:port, or on a Unix socket for
// unix:///path (a stale socket file from an earlier run is replaced).
func listenExtProc(addr string) (net.Listener, error) {
	path, ok := config.UnixPath(addr)
	if !ok {
		return net.Listen("tcp", addr)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("another process serves %s", path)
		}
		os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	// Envoy on the same host, usually as another user of the same group.
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}
