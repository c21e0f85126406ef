package cli

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	gomysql "github.com/go-sql-driver/mysql"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"google.golang.org/grpc"

	"github.com/sluicedb/sluice/config"
	"github.com/sluicedb/sluice/devstack"
	"github.com/sluicedb/sluice/envoy"
	"github.com/sluicedb/sluice/extproc"
)

type benchResult struct {
	tps, latencyMS float64
	failed         int
	rounds         []float64 // each round's TPS
	tx             int64     // transactions processed
	// cpu is CPU time by role (envoy, connector, processor) over the run.
	cpu map[string]time.Duration
}

// cpuPerTx is the CPU time of a role per transaction, in µs.
func (r benchResult) cpuPerTx(role string) float64 {
	if r.tx == 0 {
		return 0
	}
	return float64(r.cpu[role].Microseconds()) / float64(r.tx)
}

// procCPU is a process's user and system CPU time so far, from
// /proc/PID/stat (all its threads), in clock ticks of 10 ms.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after "pid (comm) ": state is the first; utime and stime
	// are the 12th and 13th.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}

// pairedRatio compares a with b round by round (paths of a pair run back to
// back): the median of the rounds' a/b, which one slow spell of a shared
// machine cannot move the way it moves a mean, and their range.
func pairedRatio(a, b benchResult) (median, lo, hi float64) {
	var rs []float64
	for i := range min(len(a.rounds), len(b.rounds)) {
		rs = append(rs, a.rounds[i]/b.rounds[i])
	}
	if len(rs) == 0 {
		return 0, 0, 0
	}
	slices.Sort(rs)
	median = rs[len(rs)/2]
	if len(rs)%2 == 0 {
		median = (rs[len(rs)/2-1] + rs[len(rs)/2]) / 2
	}
	return median, rs[0], rs[len(rs)-1]
}

var (
	tpsRE     = regexp.MustCompile(`tps = ([\d.]+)`)
	latencyRE = regexp.MustCompile(`latency average = ([\d.]+) ms`)
	failedRE  = regexp.MustCompile(`number of failed transactions: (\d+)`)
	txRE      = regexp.MustCompile(`number of transactions actually processed: (\d+)`)
)

func runPgbench(ctx context.Context, args ...string) (benchResult, error) {
	out, err := exec.CommandContext(ctx, "pgbench", args...).CombinedOutput()
	if err != nil {
		return benchResult{}, fmt.Errorf("pgbench %v: %w\n%s", args, err, out)
	}
	var r benchResult
	if m := tpsRE.FindSubmatch(out); m != nil {
		r.tps, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	if m := latencyRE.FindSubmatch(out); m != nil {
		r.latencyMS, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	if m := failedRE.FindSubmatch(out); m != nil {
		r.failed, _ = strconv.Atoi(string(m[1]))
	}
	if m := txRE.FindSubmatch(out); m != nil {
		r.tx, _ = strconv.ParseInt(string(m[1]), 10, 64)
	}
	if r.tps == 0 && !bytes.Contains(out, []byte("transactions actually processed")) {
		return r, fmt.Errorf("cannot read pgbench output:\n%s", out)
	}
	return r, nil
}

// bench runs pgbench -S four ways in one run: straight to PostgreSQL,
// through the connector and an Envoy tunnel without ext_proc, and through
// sluice (connector, Envoy, ext_proc) with its audit trail off and on.
func bench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("bench", stderr)
	dir := fs.String("dir", "", "working folder (default: a temporary one)")
	duration := fs.Duration("duration", 5*time.Second, "length of each pgbench run")
	rounds := fs.Int("rounds", 9, "pgbench runs per path and setting, interleaved across paths")
	withMySQL := fs.Bool("mysql", true, "also measure MySQL (MariaDB) point lookups")
	withMongo := fs.Bool("mongodb", true, "also measure MongoDB (FerretDB) finds by _id")
	scale := fs.Int("scale", 10, "pgbench scale factor")
	maxProcs := fs.Int("gomaxprocs", 1, "GOMAXPROCS of sluice serve, sluice connect and the tuned floor (0: Go's default); the untuned floor keeps Go's default")
	envoyWorkers := fs.Int("envoy-concurrency", 0, "Envoy's --concurrency (0: Envoy's default, one worker per core)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *rounds < 1 {
		return fmt.Errorf("--rounds must be at least 1")
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find own binary: %w", err)
	}
	if *dir == "" {
		if *dir, err = os.MkdirTemp("", "sluice-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(*dir)
	}
	abs, _ := filepath.Abs(*dir)
	st, err := devstack.Up(ctx, devstack.Options{Dir: abs, Binary: self})
	if err != nil {
		return err
	}
	defer st.Close()
	if *maxProcs > 0 {
		st.Env = []string{fmt.Sprintf("GOMAXPROCS=%d", *maxProcs)}
	}
	if *envoyWorkers > 0 {
		st.EnvoyArgs = []string{"--concurrency", strconv.Itoa(*envoyWorkers)}
	}
	gateway, err := st.StartBaseline(ctx)
	if err != nil {
		return err
	}
	connectVia := func(name, gw, target string) (string, error) {
		port, err := devstack.FreePort()
		if err != nil {
			return "", err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		_, err = st.StartConnectVia(ctx, name, gw, target, addr, st.TokenFile)
		return addr, err
	}
	baseline, err := connectVia("connect-baseline", gateway, devstack.DemoTarget)
	if err != nil {
		return err
	}
	// Two more sluice serves, started alike, one with the audit trail and
	// recordings off, to price them. Both get their own Envoy, so the pair
	// differs in the audit setting alone.
	// Envoy and sluice share this host: ext_proc over a Unix socket, as
	// the README recommends.
	sluicePath := func(name string, edit func(*config.Config)) (string, error) {
		cfg, _, err := st.StartServeWith(ctx, "serve-"+name, func(c *config.Config) {
			sock := "unix://" + filepath.Join(abs, "serve-"+name+".sock")
			c.ExtProc.Listen, c.ExtProc.Address = sock, sock
			edit(c)
		})
		if err != nil {
			return "", err
		}
		gw, err := st.StartEnvoyWith(ctx, "envoy-"+name, func(c *config.Config) { c.ExtProc.Address = cfg.ExtProc.Listen })
		if err != nil {
			return "", err
		}
		return connectVia("connect-"+name, gw, devstack.DemoTarget)
	}
	// The floor: the same Envoy configuration in front of a processor that
	// echoes every chunk and decides nothing (`sluice bench-floor`); tuned as
	// sluice is, and untuned as sluice's hop was before (TCP, gRPC's
	// default windows, the claims as metadata on every message).
	nullAddr := "unix://" + filepath.Join(abs, "floor.sock")
	if _, err := st.StartSluice(ctx, "serve-null", nullAddr, nil, "bench-floor", "--listen", nullAddr); err != nil {
		return err
	}
	nullGW, err := st.StartEnvoyWith(ctx, "envoy-null", func(c *config.Config) { c.ExtProc.Address = nullAddr })
	if err != nil {
		return err
	}
	null, err := connectVia("connect-null", nullGW, devstack.DemoTarget)
	if err != nil {
		return err
	}
	port, err := devstack.FreePort()
	if err != nil {
		return err
	}
	// Untuned, the processor also keeps Go's scheduler default.
	untunedAddr := fmt.Sprintf("127.0.0.1:%d", port)
	if _, err := st.StartSluice(ctx, "serve-null-untuned", untunedAddr, []string{"GOMAXPROCS="}, "bench-floor", "--untuned", "--listen", untunedAddr); err != nil {
		return err
	}
	untunedGW, err := st.StartEnvoyRendered(ctx, "envoy-null-untuned", func(c *config.Config) { c.ExtProc.Address = untunedAddr },
		func(c *config.Config) (*bootstrapv3.Bootstrap, error) {
			b, err := envoy.Bootstrap(c)
			if err != nil {
				return nil, err
			}
			return envoy.Untuned(b)
		})
	if err != nil {
		return err
	}
	nullUntuned, err := connectVia("connect-null-untuned", untunedGW, devstack.DemoTarget)
	if err != nil {
		return err
	}
	quiet, err := sluicePath("audit-off", func(c *config.Config) { c.Audit.Store = "off" })
	if err != nil {
		return err
	}
	audited, err := sluicePath("audit-on", func(*config.Config) {})
	if err != nil {
		return err
	}
	// Durable mode: completions wait for their events' group commit.
	durable, err := sluicePath("audit-sync", func(c *config.Config) {
		c.Audit.Store, c.Audit.Durability = "audit-sync.db", "sync"
	})
	if err != nil {
		return err
	}
	direct := fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", devstack.AgentDBUser, devstack.AgentDBPass, st.PG.Addr(), devstack.DemoDatabase)
	fmt.Fprintf(stderr, "bench: pgbench -i -s %d\n", *scale)
	if out, err := exec.CommandContext(ctx, "pgbench", "-i", "-q", "-s", strconv.Itoa(*scale), direct).CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %w\n%s", err, out)
	}
	// Neither the bare tunnel nor the floor has a sluice to log in: the
	// client brings the password of the user sluice logs in as.
	readerURL := func(addr string) string {
		return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", devstack.ReaderDBUser, devstack.ReaderDBPass, addr, devstack.DemoDatabase)
	}
	// Every path's client goes without TLS to its local port, so the paths
	// differ only in what lies behind it (with sslmode=prefer, sluice's
	// connector would answer with local TLS and the floor's could not).
	agentURL := func(addr string) string { return st.AgentURL(addr) + "?sslmode=disable" }
	// procs name each path's processes by role, for CPU per transaction.
	procs := func(name string) map[string]int {
		m := map[string]int{}
		for role, p := range map[string]string{"envoy": "envoy-" + name, "connector": "connect-" + name, "processor": "serve-" + name} {
			if pr := st.Proc(p); pr != nil {
				m[role] = pr.Pid()
			}
		}
		return m
	}
	paths := []struct {
		name, url string
		procs     map[string]int
	}{
		{"direct", direct, nil},
		{"envoy tunnel, no ext_proc", readerURL(baseline), procs("baseline")},
		{"null ext_proc, untuned hop", readerURL(nullUntuned), procs("null-untuned")},
		{"null ext_proc (floor)", readerURL(null), procs("null")},
		{"sluice, audit off", agentURL(quiet), procs("audit-off")},
		{"sluice", agentURL(audited), procs("audit-on")},
		{"sluice, audit sync", agentURL(durable), procs("audit-sync")},
	}
	const tunnelPath, untunedPath, floorPath, quietPath = 1, 2, 3, 4
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "protocol\tclients\tpath\tTPS\tmean latency ms\tfailed\tTPS vs direct\tTPS vs tunnel\tTPS vs floor\tvs audit off\tCPU µs/tx envoy\tconnector\tprocessor\t\n")
	secs := strconv.Itoa(max(1, int(duration.Seconds())))
	var auditRatios, syncRatios, floorRatios, tuningRatios []string
	for _, mode := range []string{"simple", "prepared"} {
		for _, c := range []int{1, 8} {
			res, err := interleave(*rounds, len(paths), [2]int{floorPath, quietPath}, func(i, round int) (benchResult, error) {
				fmt.Fprintf(stderr, "bench: -M %s -c %d %s (round %d)\n", mode, c, paths[i].name, round)
				before := map[string]time.Duration{}
				for role, pid := range paths[i].procs {
					before[role] = procCPU(pid)
				}
				r, err := runPgbench(ctx, "-S", "-n", "-T", secs, "-c", strconv.Itoa(c), "-j", strconv.Itoa(min(c, 2)), "-M", mode, paths[i].url)
				r.cpu = map[string]time.Duration{}
				for role, pid := range paths[i].procs {
					r.cpu[role] = procCPU(pid) - before[role]
				}
				return r, err
			})
			if err != nil {
				return err
			}
			for i, p := range paths {
				r := res[i]
				vsQuiet, vsFloor := "-", "-"
				if i >= quietPath {
					vsQuiet = fmt.Sprintf("%.2f", r.tps/res[quietPath].tps)
				}
				if i >= floorPath {
					vsFloor = fmt.Sprintf("%.2f", r.tps/res[floorPath].tps)
				}
				cpu := func(role string) string {
					if _, ok := p.procs[role]; !ok {
						return "-"
					}
					return fmt.Sprintf("%.0f", r.cpuPerTx(role))
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f\t%.3f\t%d\t%.2f\t%.2f\t%s\t%s\t%s\t%s\t%s\t\n", mode, c, p.name, r.tps, r.latencyMS, r.failed,
					r.tps/res[0].tps, r.tps/res[tunnelPath].tps, vsFloor, vsQuiet, cpu("envoy"), cpu("connector"), cpu("processor"))
			}
			med, lo, hi := pairedRatio(res[floorPath], res[untunedPath])
			tuningRatios = append(tuningRatios, fmt.Sprintf("%s c%d %.2f (rounds %.2f-%.2f, means %.2f)", mode, c, med, lo, hi, res[floorPath].tps/res[untunedPath].tps))
			med, lo, hi = pairedRatio(res[quietPath], res[floorPath])
			floorRatios = append(floorRatios, fmt.Sprintf("%s c%d %.2f (rounds %.2f-%.2f, means %.2f)", mode, c, med, lo, hi, res[quietPath].tps/res[floorPath].tps))
			med, lo, hi = pairedRatio(res[quietPath+1], res[quietPath])
			auditRatios = append(auditRatios, fmt.Sprintf("%s c%d %.2f (rounds %.2f-%.2f, means %.2f)", mode, c, med, lo, hi, res[quietPath+1].tps/res[quietPath].tps))
			med, lo, hi = pairedRatio(res[quietPath+2], res[quietPath+1])
			syncRatios = append(syncRatios, fmt.Sprintf("%s c%d %.2f (rounds %.2f-%.2f, means %.2f; latency %.3f vs %.3f ms)", mode, c, med, lo, hi, res[quietPath+2].tps/res[quietPath+1].tps, res[quietPath+2].latencyMS, res[quietPath+1].latencyMS))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nTPS of the tuned floor vs the untuned hop, median of %d rounds (goal >= 1.15):\n  %s\n", *rounds, strings.Join(tuningRatios, "\n  "))
	fmt.Fprintf(stdout, "\nTPS of sluice (audit off) vs the null ext_proc floor, median of %d paired rounds (goal >= 0.90):\n  %s\n", *rounds, strings.Join(floorRatios, "\n  "))
	fmt.Fprintf(stdout, "\nTPS with the audit trail and recordings on vs off, median of %d rounds (goal >= 0.90):\n  %s\n", *rounds, strings.Join(auditRatios, "\n  "))
	fmt.Fprintf(stdout, "\nTPS with audit.durability sync vs buffered, median of %d rounds:\n  %s\n", *rounds, strings.Join(syncRatios, "\n  "))
	if *withMongo {
		if err := benchMongo(ctx, st, gateway, connectVia, *rounds, *duration, stdout, stderr); err != nil {
			return err
		}
	}
	if !*withMySQL {
		return nil
	}
	// MySQL (MariaDB): point lookups by primary key from Go clients.
	myBase, err := connectVia("connect-baseline-mysql", gateway, devstack.DemoTarget+"-mysql")
	if err != nil {
		return err
	}
	mySluice, err := connectVia("connect-mysql", st.Config.Envoy.Listen, devstack.DemoTarget+"-mysql")
	if err != nil {
		return err
	}
	myPaths := []struct{ name, dsn string }{
		{"direct", st.Maria.DSN(devstack.AgentDBUser, devstack.AgentDBPass, devstack.DemoDatabase)},
		{"envoy tunnel, no ext_proc", fmt.Sprintf("%s:%s@tcp(%s)/%s?maxAllowedPacket=0", devstack.ReaderDBUser, devstack.ReaderDBPass, myBase, devstack.DemoDatabase)},
		{"sluice", st.MySQLDSN(mySluice)},
	}
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "mysql protocol\tclients\tpath\tQPS\tmean latency ms\terrors\tQPS vs direct\tQPS vs tunnel\t\n")
	for _, prepared := range []bool{false, true} {
		for _, c := range []int{1, 8} {
			res, err := interleave(*rounds, len(myPaths), [2]int{-1, -1}, func(i, round int) (benchResult, error) {
				fmt.Fprintf(stderr, "bench: mysql prepared=%v -c %d %s (round %d)\n", prepared, c, myPaths[i].name, round)
				return mysqlLoad(ctx, myPaths[i].dsn, prepared, c, *duration)
			})
			if err != nil {
				return err
			}
			mode := "text"
			if prepared {
				mode = "prepared"
			}
			for i, p := range myPaths {
				r := res[i]
				fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f\t%.3f\t%d\t%.2f\t%.2f\t\n", mode, c, p.name, r.tps, r.latencyMS, r.failed, r.tps/res[0].tps, r.tps/res[1].tps)
			}
		}
	}
	return tw.Flush()
}

// schedule is the order paths run in, round by round. The two paths of
// pair (-1: none) run back to back, in turns first, so each round compares
// them at the same moment; the others rotate around them so that a slow
// spell of the machine falls on every path rather than on whichever ran
// then.
func schedule(rounds, n int, pair [2]int) [][]int {
	var units [][]int
	for i := range n {
		switch i {
		case pair[0]:
			units = append(units, pair[:])
		case pair[1]:
		default:
			units = append(units, []int{i})
		}
	}
	order := make([][]int, rounds)
	for r := range rounds {
		for k := range units {
			u := units[(k+r)%len(units)]
			if len(u) == 2 && r%2 == 1 {
				u = []int{u[1], u[0]}
			}
			order[r] = append(order[r], u...)
		}
	}
	return order
}

// interleave runs n paths in schedule's order; a path's result is its
// rounds' mean, with each round's TPS kept for pairedRatio.
func interleave(rounds, n int, pair [2]int, run func(path, round int) (benchResult, error)) ([]benchResult, error) {
	res := make([]benchResult, n)
	for round, order := range schedule(rounds, n, pair) {
		for _, i := range order {
			r, err := run(i, round+1)
			if err != nil {
				return nil, err
			}
			res[i].tps += r.tps / float64(rounds)
			res[i].rounds = append(res[i].rounds, r.tps)
			res[i].latencyMS += r.latencyMS / float64(rounds)
			res[i].failed += r.failed
			res[i].tx += r.tx
			for k, v := range r.cpu {
				if res[i].cpu == nil {
					res[i].cpu = map[string]time.Duration{}
				}
				res[i].cpu[k] += v
			}
		}
	}
	return res, nil
}

// mysqlLoad runs primary-key lookups on clients connections for d.
func mysqlLoad(ctx context.Context, dsn string, prepared bool, clients int, d time.Duration) (benchResult, error) {
	cfg, err := gomysql.ParseDSN(dsn)
	if err != nil {
		return benchResult{}, err
	}
	cfg.InterpolateParams = !prepared
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return benchResult{}, err
	}
	defer db.Close()
	db.SetMaxOpenConns(clients)
	const q = "SELECT total_cents FROM orders WHERE id = ?"
	return runLoad(clients, d, func(int) (func(int) error, func(), error) {
		conn, err := db.Conn(ctx)
		if err != nil {
			return nil, nil, err
		}
		if !prepared {
			return func(i int) error {
				var v int
				return conn.QueryRowContext(ctx, q, 1+i%200).Scan(&v)
			}, func() { conn.Close() }, nil
		}
		stmt, err := conn.PrepareContext(ctx, q)
		if err != nil {
			conn.Close()
			return nil, nil, err
		}
		return func(i int) error {
			var v int
			return stmt.QueryRowContext(ctx, 1+i%200).Scan(&v)
		}, func() { stmt.Close(); conn.Close() }, nil
	}), nil
}

// runLoad runs clients workers for d, each calling the operation its setup
// returns (with 0, 1, 2, … offset by the worker's number) until the time is
// up: operations per second, mean latency, failures (a failed setup counts
// as one).
func runLoad(clients int, d time.Duration, setup func(w int) (op func(i int) error, cleanup func(), err error)) benchResult {
	var mu sync.Mutex
	var done, failed int
	var busy time.Duration
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			op, cleanup, err := setup(w)
			if err != nil {
				mu.Lock()
				failed++
				mu.Unlock()
				return
			}
			defer cleanup()
			n, f := 0, 0
			start := time.Now()
			for i := w; time.Now().Before(deadline); i++ {
				if op(i) != nil {
					f++
				} else {
					n++
				}
			}
			el := time.Since(start)
			mu.Lock()
			done, failed, busy = done+n, failed+f, busy+el
			mu.Unlock()
		}()
	}
	wg.Wait()
	r := benchResult{failed: failed, tps: float64(done) / d.Seconds()}
	if done > 0 {
		r.latencyMS = float64(busy.Milliseconds()) / float64(done)
	}
	return r
}

// benchFloor serves extproc.NullProcessor, the floor `sluice bench`
// measures sluice against, as a process of its own like sluice serve. It
// passes every byte unchecked, so it is not in the usage.
func benchFloor(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flags("bench-floor", stderr)
	listen := fs.String("listen", "", "host:port or unix:///path")
	untuned := fs.Bool("untuned", false, "gRPC's default server settings, as sluice's hop had before it was tuned")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *listen == "" {
		return fmt.Errorf("%w: --listen is required", ErrUsage)
	}
	l, err := listenExtProc(*listen)
	if err != nil {
		return err
	}
	var opts []grpc.ServerOption
	if !*untuned {
		opts = extProcServerOptions()
	}
	g := grpc.NewServer(opts...)
	extprocv3.RegisterExternalProcessorServer(g, extproc.NullProcessor{})
	fmt.Fprintln(stderr, "sluice bench-floor: every byte passes unchecked; for sluice bench only")
	context.AfterFunc(ctx, g.Stop)
	return g.Serve(l)
}

// benchMongo measures finds by _id with the Go driver: on FerretDB
// directly, through the Envoy tunnel without ext_proc (the driver logs in
// itself), and through sluice (no credentials: sluice logs in).
func benchMongo(ctx context.Context, st *devstack.Stack, gateway string, connectVia func(name, gw, target string) (string, error), rounds int, d time.Duration, stdout, stderr io.Writer) error {
	base, err := connectVia("connect-baseline-mongo", gateway, devstack.DemoMongoTarget)
	if err != nil {
		return err
	}
	through, err := connectVia("connect-bench-mongo", st.Config.Envoy.Listen, devstack.DemoMongoTarget)
	if err != nil {
		return err
	}
	withLogin := func(addr string) string {
		return fmt.Sprintf("mongodb://%s:%s@%s/?directConnection=true", devstack.AgentDBUser, devstack.AgentDBPass, addr)
	}
	paths := []struct{ name, uri string }{
		{"direct", withLogin(st.Mongo.Addr())},
		{"envoy tunnel, no ext_proc", withLogin(base)},
		{"sluice", st.MongoURI(through)},
	}
	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "mongodb find by _id	clients	path	QPS	mean latency ms	errors	QPS vs direct	QPS vs tunnel\t\n")
	for _, c := range []int{1, 8} {
		res, err := interleave(rounds, len(paths), [2]int{-1, -1}, func(i, round int) (benchResult, error) {
			fmt.Fprintf(stderr, "bench: mongodb -c %d %s (round %d)\n", c, paths[i].name, round)
			return mongoLoad(ctx, paths[i].uri, c, d)
		})
		if err != nil {
			return err
		}
		for i, p := range paths {
			r := res[i]
			fmt.Fprintf(tw, "find\t%d\t%s\t%.0f\t%.3f\t%d\t%.2f\t%.2f\t\n", c, p.name, r.tps, r.latencyMS, r.failed, r.tps/res[0].tps, r.tps/res[1].tps)
		}
	}
	return tw.Flush()
}

// mongoLoad runs clients goroutines of FindOne({_id: k}) on orders for d.
func mongoLoad(ctx context.Context, uri string, clients int, d time.Duration) (benchResult, error) {
	c, err := mongo.Connect(options.Client().ApplyURI(uri).SetMaxPoolSize(uint64(clients)))
	if err != nil {
		return benchResult{}, err
	}
	defer c.Disconnect(ctx)
	orders := c.Database(devstack.DemoDatabase).Collection("orders")
	return runLoad(clients, d, func(int) (func(int) error, func(), error) {
		return func(i int) error {
			var doc bson.Raw
			return orders.FindOne(ctx, bson.D{{Key: "_id", Value: 1 + i%200}}).Decode(&doc)
		}, func() {}, nil
	}), nil
}
