package envoy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicedb/sluice/config"
)

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sluice.yaml")
	err := os.WriteFile(p, []byte(`envoy: {listen: "127.0.0.1:10000", admin: "127.0.0.1:9901", tls_cert: c.crt, tls_key: c.key}
extproc: {listen: "0.0.0.0:9001", address: "sluice:9001"}
jwt: {issuer: "https://i", audiences: [sluice], jwks_file: jwks.json}
targets:
  - {name: pg1, protocol: postgres, address: "127.0.0.1:5432"}
  - {name: pg2, protocol: postgres, address: "db.internal:5432"}
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestBootstrap(t *testing.T) {
	b, err := Bootstrap(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	js, err := JSON(b)
	if err != nil {
		t.Fatal(err)
	}
	out := string(js)
	for _, want := range []string{
		`"failureModeAllow"`, // must not appear: false is the zero value
	} {
		if strings.Contains(out, want) {
			t.Errorf("bootstrap has %s", want)
		}
	}
	for _, want := range []string{
		`"requestBodyMode": "FULL_DUPLEX_STREAMED"`, `"responseBodyMode": "FULL_DUPLEX_STREAMED"`,
		`"allowConnect": true`, `"connectMatcher"`, `"timeout": "0s"`, `"forwardPayloadHeader": "x-sluice-claims"`, `"remove": "x-sluice-claims"`,
		`"envoy.filters.http.jwt_authn"`, `"cluster": "target_pg1"`, `"cluster": "target_pg2"`,
		`"type": "STRICT_DNS"`, `"address": "sluice"`, `"streamIdleTimeout": "3600s"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("bootstrap lacks %s", want)
		}
	}
	// jwt_authn must run before ext_proc, which must run before the router.
	j, e, r := strings.Index(out, "filters.http.jwt_authn"), strings.Index(out, "filters.http.ext_proc"), strings.Index(out, "filters.http.router")
	if j < 0 || e < j || r < e {
		t.Errorf("filter order jwt=%d ext_proc=%d router=%d", j, e, r)
	}
}

func TestBaselineHasNoExtProc(t *testing.T) {
	b, err := BaselineBootstrap(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := JSON(b)
	if strings.Contains(string(js), "filters.http.ext_proc") || !strings.Contains(string(js), "jwt_authn") {
		t.Fatal("baseline must keep jwt_authn and drop ext_proc")
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestUntunedAddsPerMessageMetadata(t *testing.T) {
	c := testConfig(t)
	b, err := Bootstrap(c)
	if err != nil {
		t.Fatal(err)
	}
	u, err := Untuned(b)
	if err != nil {
		t.Fatal(err)
	}
	tuned, _ := JSON(b)
	untuned, _ := JSON(u)
	for _, s := range []string{`"metadataOptions"`, `"requestAttributes"`, `"payloadInMetadata"`} {
		if strings.Contains(string(tuned), s) || !strings.Contains(string(untuned), s) {
			t.Errorf("%s: in the tuned bootstrap %v, in the untuned %v", s, strings.Contains(string(tuned), s), strings.Contains(string(untuned), s))
		}
	}
}
