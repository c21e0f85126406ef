package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicedb/sluice/extproc/session"
)

const good = `envoy: {listen: "127.0.0.1:10000", admin: "127.0.0.1:9901", tls_cert: tls/c.crt, tls_key: tls/c.key}
extproc: {listen: "127.0.0.1:9001"}
jwt: {issuer: "https://i", audiences: [sluice], jwks_file: keys/jwks.json}
targets:
  - {name: demo, protocol: postgres, address: "127.0.0.1:5432", database: app}
`

func write(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// refused loads the config at p, which must fail, and returns the error.
func refused(t *testing.T, name, p string) error {
	t.Helper()
	_, err := Load(p)
	if err == nil {
		t.Errorf("%s: accepted", name)
	} else {
		t.Logf("%s: %v", name, err)
	}
	return err
}

func TestLoad(t *testing.T) {
	p := write(t, good)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Path("tls/c.crt") != filepath.Join(filepath.Dir(p), "tls/c.crt") {
		t.Errorf("relative path not resolved against the config folder: %s", c.Path("tls/c.crt"))
	}
	if c.JWT.GroupsClaim != "groups" || c.ExtProc.Address != "127.0.0.1:9001" || c.Envoy.IdleTimeout == 0 {
		t.Errorf("defaults not applied: %+v", c)
	}
	if tg, ok := c.Target("demo"); !ok || tg.Database != "app" {
		t.Errorf("target: %+v %v", tg, ok)
	}
}

func TestLoadRejects(t *testing.T) {
	for name, edit := range map[string][2]string{
		"bad protocol":   {"protocol: postgres", "protocol: oracle"},
		"bad name":       {"name: demo", "name: Demo_DB"},
		"bad address":    {`address: "127.0.0.1:5432"`, `address: "nowhere"`},
		"no tls":         {"tls_cert: tls/c.crt, ", ""},
		"no jwks":        {", jwks_file: keys/jwks.json", ""},
		"bad duration":   {"admin:", "idle_timeout: forever, admin:"},
		"unknown syntax": {"targets:", "targets: ["},
	} {
		refused(t, name, write(t, strings.Replace(good, edit[0], edit[1], 1)))
	}
}

func TestCredentials(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "reader.pw"), []byte("pw-from-file\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLUICE_TEST_PW", "pw-from-env")
	cfg := strings.Replace(good, "database: app}", `database: app,
      credentials: [{groups: [analysts], user: reader, password_file: reader.pw}, {user: owner, password_env: SLUICE_TEST_PW}]}`, 1)
	p := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	tg, _ := c.Target("demo")
	for groups, want := range map[string]string{"analysts": "reader:pw-from-file", "other": "owner:pw-from-env"} {
		l, err := tg.LoginFor([]string{groups})
		if err != nil || l.User+":"+l.Password.Reveal() != want {
			t.Errorf("%s: %+v %v", groups, l, err)
		}
	}
	// A secret never prints, however it is formatted.
	l, _ := tg.LoginFor([]string{"analysts"})
	for _, s := range []string{fmt.Sprint(l), fmt.Sprintf("%+v %#v %s %q", *l, *l, l.Password, l.Password)} {
		if strings.Contains(s, "pw-from") {
			t.Errorf("secret printed: %s", s)
		}
	}
	js, _ := json.Marshal(l)
	if strings.Contains(string(js), "pw-from") {
		t.Errorf("secret marshalled: %s", js)
	}

	for name, edit := range map[string][2]string{
		"missing file": {"password_file: reader.pw}", "password_file: nowhere.pw}"},
		"unset env":    {"password_env: SLUICE_TEST_PW}", "password_env: SLUICE_TEST_UNSET}"},
		"both sources": {"password_file: reader.pw}", "password_file: reader.pw, password_env: SLUICE_TEST_PW}"},
		"no user":      {"user: reader,", ""},
	} {
		if err := os.WriteFile(p, []byte(strings.Replace(cfg, edit[0], edit[1], 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := refused(t, name, p); err != nil && strings.Contains(err.Error(), "pw-from") {
			t.Errorf("%s: error shows the secret: %v", name, err)
		}
	}
	// Groups listed, none of the agent's: no login, an error.
	only := session.Target{Name: "x", Logins: []session.Login{{Groups: []string{"analysts"}, User: "r"}}}
	if _, err := only.LoginFor([]string{"ops"}); err == nil {
		t.Error("a login for a group the agent is not in")
	}
}

func TestGuardrails(t *testing.T) {
	s := good + `  - {name: bulk, protocol: mysql, address: "127.0.0.1:3306", guardrails: {max_rows: 5}}
approvals: {listen: "127.0.0.1:9443"}
guardrails:
  statement_timeout: 30s
  max_rows: 1000
  statements_per_second: 20
  pause: {slower_than: 2s, after: 3, within: 5m}
`
	c, err := Load(write(t, s))
	if err != nil {
		t.Fatal(err)
	}
	demo, _ := c.Target("demo")
	if g := demo.Guardrails; g.StatementTimeout.Seconds() != 30 || g.MaxRows != 1000 || g.StatementsPerSecond != 20 ||
		g.PauseAfter != 3 || g.SlowerThan.Seconds() != 2 || g.Window.Minutes() != 5 {
		t.Errorf("demo: %+v", g)
	}
	bulk, _ := c.Target("bulk")
	if g := bulk.Guardrails; g.MaxRows != 5 || g.StatementTimeout != 0 || g.PauseAfter != 0 {
		t.Errorf("a target's guardrails replace the top level's: %+v", g)
	}
	for name, bad := range map[string]string{
		"negative":             "guardrails: {max_rows: -1}\n",
		"pause without window": "approvals: {listen: \"127.0.0.1:9443\"}\nguardrails: {pause: {after: 3}}\n",
		"pause, no approvals":  "guardrails: {pause: {slower_than: 2s, after: 3, within: 5m}}\n",
		"tiny timeout":         "guardrails: {statement_timeout: 10us}\n",
	} {
		refused(t, name, write(t, good+bad))
	}
}
