package envoy

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// docker-compose.yaml is for users (no Docker engine here): check that it
// stays consistent with what the tests run — the pinned Envoy version and the
// bootstrap rendered by sluice itself.
func TestComposeMatchesTestedSetup(t *testing.T) {
	b, err := os.ReadFile("../docker-compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image   string   `yaml:"image"`
			Command []string `yaml:"command"`
			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatal(err)
	}
	setup, err := os.ReadFile("../scripts/setup")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`ENVOY_VERSION=([0-9.]+)`).FindSubmatch(setup)
	if m == nil {
		t.Fatal("scripts/setup pins no ENVOY_VERSION")
	}
	if got, want := compose.Services["envoy"].Image, "envoyproxy/envoy:v"+string(m[1]); got != want {
		t.Errorf("compose Envoy image %q, tests run %q", got, want)
	}
	if !strings.Contains(strings.Join(compose.Services["envoy"].Command, " "), "/etc/sluice/envoy.json") ||
		!strings.Contains(strings.Join(compose.Services["init"].Command, " "), "sluice envoy bootstrap --config /etc/sluice/sluice.yaml --out /etc/sluice/envoy.json") {
		t.Error("compose must run the bootstrap that `sluice envoy bootstrap` renders")
	}
	fm := regexp.MustCompile(`FERRETDB_VERSION=v([0-9.]+)`).FindSubmatch(setup)
	if fm == nil {
		t.Fatal("scripts/setup pins no FERRETDB_VERSION")
	}
	if got, want := compose.Services["ferretdb"].Image, "ghcr.io/ferretdb/ferretdb:"+string(fm[1]); got != want {
		t.Errorf("compose FerretDB image %q, tests run %q", got, want)
	}
	if !strings.Contains(strings.Join(compose.Services["init"].Command, " "), "--mongodb ferretdb:27017") {
		t.Error("compose's config has no MongoDB target")
	}
	// The demo target's credentials name the read-only user the devstack
	// creates: compose's PostgreSQL must create it the same way.
	vols := strings.Join(compose.Services["postgres"].Volumes, " ")
	for _, f := range []string{"./devstack/demo.sql:", "./devstack/demo-reader.sql:"} {
		if !strings.Contains(vols, f) {
			t.Errorf("compose's PostgreSQL does not run %s", f)
		}
	}
}
