package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		s := strings.Replace(good, edit[0], edit[1], 1)
		if _, err := Load(write(t, s)); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
