//go:build suites

// Package driversuites runs real drivers' own test suites twice, directly
// against the database and through sluice (connector, the real Envoy,
// sluice serve) with a permit-all policy, and reports every test that
// passes direct but not through sluice. Run it with scripts/driver-suites;
// it is not part of scripts/test (it takes minutes and downloads the
// drivers' sources).
package driversuites

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sluicedb/sluice/config"
	"github.com/sluicedb/sluice/devstack"
)

const (
	pgxModule   = "github.com/jackc/pgx/v5@v5.13.0"
	mysqlModule = "github.com/go-sql-driver/mysql@v1.10.1"
	mongoModule = "go.mongodb.org/mongo-driver/v2@v2.10.0"
)

var pgxPackages = []string{".", "./pgconn", "./pgxpool", "./stdlib", "./pgtype"}

// gateway is a sluice serve with a permit-all policy and targets for the
// suites' databases, and an Envoy in front of it.
type gateway struct {
	stack *devstack.Stack
	addr  string // the Envoy listener
	token string // token file
}

func startGateway(t *testing.T, ctx context.Context) *gateway {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "sluice")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/sluice").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	st, err := devstack.Up(ctx, devstack.Options{Dir: dir, Binary: bin, NoConnector: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	// The drivers' databases, set up as their CI does (as superuser).
	if err := st.PG.Exec(ctx, "postgres", "CREATE DATABASE pgx_test"); err != nil {
		t.Fatal(err)
	}
	pgxDir := moduleDir(t, pgxModule)
	cmd := exec.CommandContext(ctx, "psql", "-X", "-v", "ON_ERROR_STOP=0", "-f", filepath.Join(pgxDir, "testsetup", "postgresql_setup.sql"),
		st.PG.URL("postgres", st.PG.SuperPassword, "pgx_test"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Logf("pgx setup: %v\n%s", err, out)
	}
	for _, q := range []string{"CREATE DATABASE IF NOT EXISTS gotest", "CREATE USER IF NOT EXISTS 'gotest'@'%' IDENTIFIED BY 'secret'",
		"GRANT ALL ON *.* TO 'gotest'@'%' WITH GRANT OPTION"} {
		if err := st.Maria.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	policies := filepath.Join(dir, "permit-all")
	if err := os.MkdirAll(policies, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(policies, "all.cedar"), []byte("@id(\"permit-all\")\npermit (principal, action, resource);\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addTargets := func(c *config.Config) {
		// The driver's integration tests use the database "test"; sluice
		// logs in with FerretDB's setup user, as for the demo target.
		var mongoLogin []config.Credential
		for _, tg := range c.Targets {
			if tg.Name == devstack.DemoMongoTarget {
				mongoLogin = tg.Credentials
			}
		}
		if st.Mongo != nil {
			c.Targets = append(c.Targets, config.Target{Name: "mongotest", Protocol: "mongodb", Address: st.Mongo.Addr(), Database: "test",
				Credentials: mongoLogin})
		}
		c.Targets = append(c.Targets,
			config.Target{Name: "pgx", Protocol: "postgres", Address: st.PG.Addr(), Database: "pgx_test",
				CatalogURL: st.PG.URL("postgres", st.PG.SuperPassword, "pgx_test")},
			config.Target{Name: "gotest", Protocol: "mysql", Address: st.Maria.Addr(), Database: "gotest",
				CatalogURL: fmt.Sprintf("gotest:secret@tcp(%s)/gotest", st.Maria.Addr())})
	}
	sc, _, err := st.StartServeWith(ctx, "serve-suites", func(c *config.Config) {
		c.Policies = policies
		// Permit-all and no guardrails: the suites' slow statements and
		// sleeps would otherwise pause their sessions for approval.
		c.Guardrails = config.Guardrails{}
		addTargets(c)
	})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := st.StartEnvoyWith(ctx, "envoy-suites", func(c *config.Config) {
		addTargets(c)
		c.ExtProc.Address = sc.ExtProc.Listen
	})
	if err != nil {
		t.Fatal(err)
	}
	return &gateway{stack: st, addr: gw, token: st.TokenFile}
}

// connect starts a connector to target and returns its address.
func (g *gateway) connect(t *testing.T, ctx context.Context, target string) string {
	t.Helper()
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if _, err := g.stack.StartConnectVia(ctx, "connect-"+target, g.addr, target, addr, g.token); err != nil {
		t.Fatal(err)
	}
	return addr
}

func moduleDir(t *testing.T, mod string) string {
	t.Helper()
	out, err := exec.Command("go", "mod", "download", "-json", mod).Output()
	if err != nil {
		t.Fatalf("go mod download %s: %v", mod, err)
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	// The module cache is read-only; the suites run in a copy.
	dst := filepath.Join(t.TempDir(), filepath.Base(m.Dir))
	if out, err := exec.Command("cp", "-r", m.Dir, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v %s", m.Dir, err, out)
	}
	_ = exec.Command("chmod", "-R", "u+w", dst).Run()
	return dst
}

// result is one test's outcome and its output.
type result struct {
	action string
	output strings.Builder
}

// runSuite runs go test -json in dir with env and returns each test's
// outcome by "package Test".
func runSuite(t *testing.T, dir string, env []string, skip string, pkgs ...string) map[string]*result {
	t.Helper()
	args := []string{"test", "-json", "-count=1", "-p", "1", "-timeout", "20m"}
	if run := os.Getenv("SLUICE_SUITE_RUN"); run != "" {
		args = append(args, "-run", run) // to look at some tests again
	}
	if s := os.Getenv("SLUICE_SUITE_SKIP"); s != "" {
		skip = s
	}
	if skip != "" {
		args = append(args, "-skip", skip)
	}
	args = append(args, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, _ := cmd.Output()
	res := map[string]*result{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev struct{ Action, Package, Test, Output string }
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Test == "" {
			continue
		}
		// Subtests named after temporary paths differ run to run.
		key := strings.TrimPrefix(ev.Package, "github.com/") + " " + tmpPath.ReplaceAllString(ev.Test, "TMP")
		r := res[key]
		if r == nil {
			r = &result{}
			res[key] = r
		}
		switch ev.Action {
		case "pass", "fail", "skip":
			r.action = ev.Action
		case "output":
			if r.output.Len() < 4000 {
				r.output.WriteString(ev.Output)
			}
		}
	}
	return res
}

var tmpPath = regexp.MustCompile(`/tmp/[^/' ]+(/[^/' ]+)*`)

// compare prints the table and every regression with its first error line.
func compare(t *testing.T, name string, direct, via map[string]*result) {
	t.Helper()
	pass := func(m map[string]*result) int {
		n := 0
		for _, r := range m {
			if r.action == "pass" {
				n++
			}
		}
		return n
	}
	var regress []string
	for k, r := range direct {
		if r.action != "pass" {
			continue
		}
		if v := via[k]; v == nil || v.action != "pass" {
			regress = append(regress, k)
		}
	}
	sort.Strings(regress)
	t.Logf("%s: %d tests; passing direct %d; passing through sluice %d; regressions %d", name, len(direct), pass(direct), pass(via), len(regress))
	// Per package: pass / fail / skip each way.
	type counts struct{ pass, fail, skip int }
	per := map[string]*[2]counts{}
	for i, m := range []map[string]*result{direct, via} {
		for k, r := range m {
			pkg, _, _ := strings.Cut(k, " ")
			if per[pkg] == nil {
				per[pkg] = &[2]counts{}
			}
			switch r.action {
			case "pass":
				per[pkg][i].pass++
			case "fail":
				per[pkg][i].fail++
			default:
				per[pkg][i].skip++
			}
		}
	}
	var pkgs []string
	for p := range per {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for _, p := range pkgs {
		c := per[p]
		t.Logf("  %-28s direct pass/fail/skip %d/%d/%d   through sluice %d/%d/%d", p, c[0].pass, c[0].fail, c[0].skip, c[1].pass, c[1].fail, c[1].skip)
	}
	// Why tests fail either way (the drivers' suites expect setups this
	// machine may lack: TLS certificates, other servers, extensions).
	reasons := map[string]int{}
	for k, r := range direct {
		if r.action == "fail" {
			reasons[firstError(r.output.String())]++
			if len(reasons) <= 8 {
				t.Logf("  failed direct: %s", k)
			}
		}
	}
	var rs []string
	for r := range reasons {
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool { return reasons[rs[i]] > reasons[rs[j]] })
	for i, r := range rs {
		if i == 8 {
			break
		}
		t.Logf("  direct failures (%d): %s", reasons[r], r)
	}
	for _, k := range regress {
		why := "did not run"
		if v := via[k]; v != nil {
			why = firstError(v.output.String())
		}
		t.Logf("  REGRESSION %s: %s", k, why)
	}
	if os.Getenv("SLUICE_SUITE_VERBOSE") != "" {
		for _, k := range regress {
			if v := via[k]; v != nil {
				t.Logf("----- %s\n%s", k, v.output.String())
			}
		}
	}
}

// firstError is the most telling line of a failed test's output: one
// naming sluice, else an SQLSTATE, else testify's "Error:" line, else any
// line about an error.
func firstError(out string) string {
	lines := strings.Split(out, "\n")
	for _, pick := range []func(string) bool{
		func(l string) bool { return strings.Contains(l, "sluice") },
		func(l string) bool { return strings.Contains(l, "SQLSTATE") },
		func(l string) bool { return strings.HasPrefix(l, "Error:") },
		func(l string) bool {
			return strings.Contains(strings.ToLower(l), "error") && !strings.HasPrefix(l, "Error Trace:")
		},
	} {
		for _, l := range lines {
			l = strings.TrimSpace(l)
			if pick(l) {
				if len(l) > 300 {
					l = l[:300]
				}
				return l
			}
		}
	}
	return "(no error line)"
}

func TestPgxSuite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	g := startGateway(t, ctx)
	via := g.connect(t, ctx, "pgx")
	dir := moduleDir(t, pgxModule)
	// The cluster authenticates with SCRAM only: pgx_pw (SCRAM, superuser).
	pg := g.stack.PG.Addr()
	direct := runSuite(t, dir, []string{"PGX_TEST_DATABASE=postgres://pgx_pw:secret@" + pg + "/pgx_test"}, "", pgxPackages...)
	through := runSuite(t, dir, []string{"PGX_TEST_DATABASE=postgres://pgx_pw:secret@" + via + "/pgx_test"}, "", pgxPackages...)
	compare(t, "pgx v5.13.0 ("+strings.Join(pgxPackages, " ")+")", direct, through)
}

func TestGoMySQLSuite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	g := startGateway(t, ctx)
	via := g.connect(t, ctx, "gotest")
	dir := moduleDir(t, mysqlModule)
	env := func(addr string) []string {
		return []string{"MYSQL_TEST_USER=gotest", "MYSQL_TEST_PASS=secret", "MYSQL_TEST_PROT=tcp", "MYSQL_TEST_ADDR=" + addr, "MYSQL_TEST_DBNAME=gotest"}
	}
	// TestConnectorReturnsTimeout dials an unroutable address and panics
	// in this sandbox, direct too, which would end the package's run.
	const skip = "TestConnectorReturnsTimeout"
	direct := runSuite(t, dir, env(g.stack.Maria.Addr()), skip, ".")
	through := runSuite(t, dir, env(via), skip, ".")
	compare(t, "go-sql-driver/mysql v1.10.1", direct, through)
}

// TestMongoGoDriverSuite runs the MongoDB Go driver's integration tests
// (internal/integration, on mtest) against FerretDB: direct with the setup
// user's credentials, and through sluice with a URI that holds none.
func TestMongoGoDriverSuite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	g := startGateway(t, ctx)
	if g.stack.Mongo == nil {
		t.Skip("no FerretDB in this stack")
	}
	via := g.connect(t, ctx, "mongotest")
	dir := moduleDir(t, mongoModule)
	m := g.stack.Mongo
	// The module ships a go.work naming modules its zip lacks.
	// TestClientStress (1,000 concurrent finds with timeouts) sometimes
	// leaves FerretDB 1.24's SQLite answering every later create with
	// "interrupted (9)", direct as well as through sluice, which would fail
	// the rest of the run either way.
	const skip = "TestClientStress"
	direct := runSuite(t, dir, []string{"GOWORK=off", "MONGODB_URI=" + m.URI()}, skip, "./internal/integration")
	through := runSuite(t, dir, []string{"GOWORK=off", "MONGODB_URI=mongodb://" + via + "/?directConnection=true"}, skip, "./internal/integration")
	compare(t, "mongo-driver v2.10.0 (internal/integration)", direct, through)
}
