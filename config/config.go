// Package config reads sluice's configuration file: the Envoy listener, the
// JWT provider, the policy directory and the database targets. One file
// drives both `sluice serve` and the Envoy configuration it generates.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluicedb/sluice/extproc/session"
)

// Config is the whole file. Relative paths are relative to the file's folder.
type Config struct {
	Envoy    Envoy   `yaml:"envoy"`
	ExtProc  ExtProc `yaml:"extproc"`
	JWT      JWT     `yaml:"jwt"`
	Policies string  `yaml:"policies"` // policy folder; empty: the embedded defaults
	// Shadow makes the policy set observe only: refusals are logged, and
	// the statements run. For trying a new policy set on live traffic.
	Shadow bool `yaml:"shadow,omitempty"`
	// MaskingKeyFile holds the key of deterministic masking tokens (equal
	// inputs give equal tokens across sessions). Without it tokens redact.
	MaskingKeyFile string   `yaml:"masking_key_file,omitempty"`
	Targets        []Target `yaml:"targets"`

	dir string
}

// Envoy is the gateway listener that agents connect to.
type Envoy struct {
	Listen  string `yaml:"listen"` // host:port of the CONNECT listener
	Admin   string `yaml:"admin"`  // host:port of Envoy's admin interface
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// IdleTimeout bounds a tunnel with no traffic in either direction. It must
	// exceed the longest idle session and the longest approval hold.
	IdleTimeout Duration `yaml:"idle_timeout"`
}

// ExtProc is where `sluice serve` listens for Envoy's ext_proc streams.
type ExtProc struct {
	Listen string `yaml:"listen"`
	// Address Envoy uses to reach sluice, when it differs from Listen
	// (e.g. a service name under docker compose).
	Address string `yaml:"address"`
}

// JWT is the identity provider whose tokens agents present.
type JWT struct {
	Issuer      string   `yaml:"issuer"`
	Audiences   []string `yaml:"audiences"`
	JWKSFile    string   `yaml:"jwks_file"`
	GroupsClaim string   `yaml:"groups_claim"`
}

// Target is a database agents may reach.
type Target struct {
	Name     string            `yaml:"name"`
	Protocol string            `yaml:"protocol"`
	Address  string            `yaml:"address"`
	Database string            `yaml:"database"`
	Tags     map[string]string `yaml:"tags"`
	// CatalogURL is how sluice reads the target's relations and columns
	// (${VAR} references are expanded from the environment).
	CatalogURL string `yaml:"catalog_url,omitempty"`
}

// Duration is a time.Duration written as "90s" or "1h".
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Load reads and validates a configuration file.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read config: %w", err)
	}
	var c Config
	if err := yaml.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("cannot parse config %s: %w", path, err)
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("cannot resolve config folder: %w", err)
	}
	c.dir = abs
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config %s: %w", path, err)
	}
	return &c, nil
}

func (c *Config) applyDefaults() {
	if c.Envoy.IdleTimeout == 0 {
		c.Envoy.IdleTimeout = Duration(time.Hour)
	}
	if c.JWT.GroupsClaim == "" {
		c.JWT.GroupsClaim = "groups"
	}
	if c.ExtProc.Address == "" {
		c.ExtProc.Address = c.ExtProc.Listen
	}
}

var targetName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Validate reports the first problem in the configuration.
func (c *Config) Validate() error {
	var errs []error
	for field, addr := range map[string]string{"envoy.listen": c.Envoy.Listen, "envoy.admin": c.Envoy.Admin, "extproc.listen": c.ExtProc.Listen, "extproc.address": c.ExtProc.Address} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
	}
	if c.Envoy.TLSCert == "" || c.Envoy.TLSKey == "" {
		errs = append(errs, errors.New("envoy.tls_cert and envoy.tls_key are required: tokens never cross the network in clear"))
	}
	if c.JWT.Issuer == "" || len(c.JWT.Audiences) == 0 || c.JWT.JWKSFile == "" {
		errs = append(errs, errors.New("jwt.issuer, jwt.audiences and jwt.jwks_file are required"))
	}
	if len(c.Targets) == 0 {
		errs = append(errs, errors.New("no targets"))
	}
	seen := map[string]bool{}
	for i, t := range c.Targets {
		if !targetName.MatchString(t.Name) {
			errs = append(errs, fmt.Errorf("targets[%d]: name %q must be a DNS label (lowercase letters, digits, '-')", i, t.Name))
		}
		if seen[t.Name] {
			errs = append(errs, fmt.Errorf("targets[%d]: duplicate name %q", i, t.Name))
		}
		seen[t.Name] = true
		if t.Protocol != "postgres" && t.Protocol != "mysql" {
			errs = append(errs, fmt.Errorf("target %q: protocol must be postgres or mysql, not %q", t.Name, t.Protocol))
		}
		if _, _, err := net.SplitHostPort(t.Address); err != nil {
			errs = append(errs, fmt.Errorf("target %q: address: %w", t.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Path resolves a path from the file against the file's folder.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

// Target implements extproc.Targets.
func (c *Config) Target(name string) (session.Target, bool) {
	for _, t := range c.Targets {
		if t.Name == name {
			return session.Target{Name: t.Name, Protocol: t.Protocol, Database: t.Database, Tags: t.Tags}, true
		}
	}
	return session.Target{}, false
}

// Write saves c as YAML.
func (c *Config) Write(path string) error {
	b, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("cannot encode config: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("cannot write config: %w", err)
	}
	return nil
}
