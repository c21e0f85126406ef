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

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/sluicedb/sluice/config"
	"github.com/sluicedb/sluice/devstack"
)

type benchResult struct {
	tps, latencyMS float64
	failed         int
	rounds         []float64 // each round's TPS
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
	scale := fs.Int("scale", 10, "pgbench scale factor")
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
	sluicePath := func(name string, edit func(*config.Config)) (string, error) {
		cfg, _, err := st.StartServeWith(ctx, "serve-"+name, edit)
		if err != nil {
			return "", err
		}
		gw, err := st.StartEnvoyWith(ctx, "envoy-"+name, func(c *config.Config) { c.ExtProc.Address = cfg.ExtProc.Listen })
		if err != nil {
			return "", err
		}
		return connectVia("connect-"+name, gw, devstack.DemoTarget)
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
	paths := []struct{ name, url string }{
		{"direct", direct},
		// The bare tunnel has no sluice to log in: the client brings the
		// password of the user sluice logs in as for the bench's agent.
		{"envoy tunnel, no ext_proc", fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", devstack.ReaderDBUser, devstack.ReaderDBPass, baseline, devstack.DemoDatabase)},
		{"sluice, audit off", st.AgentURL(quiet)},
		{"sluice", st.AgentURL(audited)},
		{"sluice, audit sync", st.AgentURL(durable)},
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "protocol\tclients\tpath\tTPS\tmean latency ms\tfailed\tTPS vs direct\tTPS vs tunnel\tvs audit off\t\n")
	secs := strconv.Itoa(max(1, int(duration.Seconds())))
	var auditRatios, syncRatios []string
	for _, mode := range []string{"simple", "prepared"} {
		for _, c := range []int{1, 8} {
			res, err := interleave(*rounds, len(paths), [2]int{2, 3}, func(i, round int) (benchResult, error) {
				fmt.Fprintf(stderr, "bench: -M %s -c %d %s (round %d)\n", mode, c, paths[i].name, round)
				return runPgbench(ctx, "-S", "-n", "-T", secs, "-c", strconv.Itoa(c), "-j", strconv.Itoa(min(c, 2)), "-M", mode, paths[i].url)
			})
			if err != nil {
				return err
			}
			for i, p := range paths {
				r := res[i]
				vsQuiet := "-"
				if i >= 2 {
					vsQuiet = fmt.Sprintf("%.2f", r.tps/res[2].tps)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f\t%.3f\t%d\t%.2f\t%.2f\t%s\t\n", mode, c, p.name, r.tps, r.latencyMS, r.failed, r.tps/res[0].tps, r.tps/res[1].tps, vsQuiet)
			}
			med, lo, hi := pairedRatio(res[3], res[2])
			auditRatios = append(auditRatios, fmt.Sprintf("%s c%d %.2f (rounds %.2f-%.2f, means %.2f)", mode, c, med, lo, hi, res[3].tps/res[2].tps))
			med, lo, hi = pairedRatio(res[4], res[3])
			syncRatios = append(syncRatios, fmt.Sprintf("%s c%d %.2f (rounds %.2f-%.2f, means %.2f; latency %.3f vs %.3f ms)", mode, c, med, lo, hi, res[4].tps/res[3].tps, res[4].latencyMS, res[3].latencyMS))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nTPS with the audit trail and recordings on vs off, median of %d paired rounds (goal >= 0.90):\n  %s\n", *rounds, strings.Join(auditRatios, "\n  "))
	fmt.Fprintf(stdout, "\nTPS with audit.durability sync vs buffered, median of %d rounds:\n  %s\n", *rounds, strings.Join(syncRatios, "\n  "))
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
	var mu sync.Mutex
	var done, failed int
	var busy time.Duration
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := db.Conn(ctx)
			if err != nil {
				mu.Lock()
				failed++
				mu.Unlock()
				return
			}
			defer conn.Close()
			var stmt *sql.Stmt
			if prepared {
				if stmt, err = conn.PrepareContext(ctx, "SELECT total_cents FROM orders WHERE id = ?"); err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
					return
				}
				defer stmt.Close()
			}
			n, f := 0, 0
			start := time.Now()
			for i := w; time.Now().Before(deadline); i++ {
				var v int
				var err error
				if stmt != nil {
					err = stmt.QueryRowContext(ctx, 1+i%200).Scan(&v)
				} else {
					err = conn.QueryRowContext(ctx, "SELECT total_cents FROM orders WHERE id = ?", 1+i%200).Scan(&v)
				}
				if err != nil {
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
	return r, nil
}
