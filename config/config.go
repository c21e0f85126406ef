// Package config reads sluice's configuration file: the Envoy listener, the
// JWT provider, the policy directory and the database targets. One file
// drives both `sluice serve` and the Envoy configuration it generates.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/guard"
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
	// Approvals hold statements whose policy outcome is "approval" for a
	// human's decision. Without approvals.listen they are refused.
	Approvals Approvals `yaml:"approvals,omitempty"`
	// Audit is where the hash-chained audit events go.
	Audit Audit `yaml:"audit,omitempty"`
	// Telemetry: Envoy's traces. sluice's own spans follow the standard
	// OTEL_* environment variables.
	Telemetry Telemetry `yaml:"telemetry,omitempty"`
	// Guardrails bound what an agent may do within its role; a target's
	// own guardrails replace these.
	Guardrails Guardrails `yaml:"guardrails,omitempty"`

	dir string
}

// Guardrails stop runaway agents early. Zero values are off.
type Guardrails struct {
	// StatementTimeout is set in the database for every session
	// (PostgreSQL statement_timeout, MariaDB max_statement_time); the
	// agent's attempts to raise or disable it are refused.
	StatementTimeout Duration `yaml:"statement_timeout,omitempty"`
	// MaxRows and MaxBytes cut a result past so many rows or bytes with an
	// error; the connection stays usable.
	MaxRows  int64 `yaml:"max_rows,omitempty"`
	MaxBytes int64 `yaml:"max_bytes,omitempty"`
	// Rate limits, per session and per agent (across its sessions on this
	// replica): a statement beyond them is refused.
	StatementsPerSecond int64 `yaml:"statements_per_second,omitempty"`
	RowsPerMinute       int64 `yaml:"rows_per_minute,omitempty"`
	// Pause switches a session to paused — every further statement needs
	// approval until a human resumes it — after so many slow statements.
	Pause Pause `yaml:"pause,omitempty"`
}

// Pause is a latency threshold: After statements slower than SlowerThan
// (or that waited on a lock, or hit the statement timeout) within Within.
type Pause struct {
	SlowerThan Duration `yaml:"slower_than,omitempty"`
	After      int      `yaml:"after,omitempty"`
	Within     Duration `yaml:"within,omitempty"`
}

// Telemetry configures Envoy's tracing.
type Telemetry struct {
	// OTLPEndpoint (host:port, OTLP/gRPC) receives Envoy's spans; each
	// tunnel's span is the parent of sluice's session span. Empty: off.
	OTLPEndpoint string `yaml:"otlp_endpoint,omitempty"`
}

// Audit configures the evidence trail.
type Audit struct {
	// Store is a SQLite file (relative to this file's folder; default
	// audit.db) or a postgres:// URL (${VAR} expanded); "off" records none.
	Store string `yaml:"store,omitempty"`
	// JSONL also writes each event as a JSON line to this file ("-" for
	// standard output), for SIEM ingestion.
	JSONL string `yaml:"jsonl,omitempty"`
	// FailOpen keeps admitting sessions while the audit trail fails
	// (default: refuse them).
	FailOpen bool `yaml:"fail_open,omitempty"`
	// OTLPLogs also emits each event as an OpenTelemetry log record
	// (exported per the OTEL_* variables).
	OTLPLogs bool `yaml:"otlp_logs,omitempty"`
	// Durability is "buffered" (default: events are committed every
	// 100 ms, off the data path; a crash loses at most that window, and
	// `sluice audit verify` names the sessions it cut off) or "sync" (a
	// statement's completion reaches the client only once its event is
	// committed, in group commits: nothing a client saw succeed is lost).
	Durability string `yaml:"durability,omitempty"`
}

// Approvals configures just-in-time approval.
type Approvals struct {
	// Listen is where sluice serves the approvals API and page over HTTPS
	// (with the gateway's certificate).
	Listen string `yaml:"listen,omitempty"`
	// Store is a SQLite file (relative to this file's folder) or a
	// postgres:// URL (${VAR} expanded) shared by several sluice replicas.
	Store string `yaml:"store,omitempty"`
	// Timeout bounds a held statement's wait (default 5m); Envoy's idle
	// timeout must exceed it.
	Timeout Duration `yaml:"timeout,omitempty"`
	// Validity is how long an approval stays valid for resubmission
	// (async mode, or after a restart); default 15m.
	Validity Duration `yaml:"validity,omitempty"`
	// AsyncGroups are agents that must not block: they get an immediate
	// error naming the request, and resubmit once it is approved.
	AsyncGroups []string `yaml:"async_groups,omitempty"`
	// WebhookURL receives a Slack-compatible message per request.
	WebhookURL string `yaml:"webhook_url,omitempty"`
	// PageURL is the page's address as approvers reach it (for links);
	// default https://<listen>/.
	PageURL string `yaml:"page_url,omitempty"`
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
	// Listen is host:port, or unix:///path for a Unix domain socket when
	// Envoy runs on the same host (cheaper than TCP on loopback).
	Listen string `yaml:"listen"`
	// Address Envoy uses to reach sluice, when it differs from Listen
	// (e.g. a service name under docker compose).
	Address string `yaml:"address"`
}

// JWT is the identity provider whose tokens agents present.
type JWT struct {
	Issuer    string   `yaml:"issuer"`
	Audiences []string `yaml:"audiences"`
	// The issuer's keys: a local JWKS file, or the issuer's JWKS URL (Envoy
	// fetches it and refreshes it every 5 minutes). Exactly one is set.
	JWKSFile string `yaml:"jwks_file,omitempty"`
	JWKSURI  string `yaml:"jwks_uri,omitempty"`
	// JWKSCAFile verifies an https JWKS URL's server (default: the system's CAs).
	JWKSCAFile  string `yaml:"jwks_ca_file,omitempty"`
	GroupsClaim string `yaml:"groups_claim"`
	// MaxTTL caps how long a token may still be valid when presented
	// (its exp minus now; default 24h): a token without exp, or one
	// minted to live longer, is refused by Envoy, sluice and the
	// approvals API alike.
	MaxTTL Duration `yaml:"max_ttl,omitempty"`
	// ClockSkew is the leeway for exp (default 30s), the same in Envoy,
	// sluice and the approvals API.
	ClockSkew Duration `yaml:"clock_skew,omitempty"`
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
	// Credentials are the database logins sluice performs for agents, so
	// that agents never hold a database password. The first entry whose
	// groups meet the agent's is used: list the least-privileged first.
	// Without credentials the agent's client authenticates itself.
	Credentials []Credential `yaml:"credentials,omitempty"`
	// Guardrails, when set, replace the top-level guardrails for this target.
	Guardrails *Guardrails `yaml:"guardrails,omitempty"`
}

// GuardrailsFor returns the guardrails that apply to target t.
func (c *Config) GuardrailsFor(t Target) Guardrails {
	if t.Guardrails != nil {
		return *t.Guardrails
	}
	return c.Guardrails
}

func (g Guardrails) validate(field string, approvals bool) []error {
	var errs []error
	if g.StatementTimeout < 0 || g.MaxRows < 0 || g.MaxBytes < 0 || g.StatementsPerSecond < 0 || g.RowsPerMinute < 0 || g.Pause.After < 0 {
		errs = append(errs, fmt.Errorf("%s: limits cannot be negative", field))
	}
	if g.StatementTimeout > 0 && time.Duration(g.StatementTimeout) < time.Millisecond {
		errs = append(errs, fmt.Errorf("%s.statement_timeout: at least 1ms", field))
	}
	if p := g.Pause; p.After > 0 && (p.SlowerThan <= 0 || p.Within <= 0) {
		errs = append(errs, fmt.Errorf("%s.pause: after needs slower_than and within", field))
	}
	if g.Pause.After > 0 && !approvals {
		// A paused session's statements wait for approval, and a human
		// resumes it through the approvals API.
		errs = append(errs, fmt.Errorf("%s.pause needs approvals.listen", field))
	}
	return errs
}

// Credential is one database login, for agents in the listed groups.
type Credential struct {
	Groups []string `yaml:"groups,omitempty"` // empty: any agent
	User   string   `yaml:"user"`
	// The password comes from a file (its first line) or an environment
	// variable, never from this file, so configs can live in version control.
	PasswordFile string `yaml:"password_file,omitempty"`
	PasswordEnv  string `yaml:"password_env,omitempty"`

	password session.Secret
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
	if err := c.loadSecrets(); err != nil {
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
	if c.JWT.MaxTTL == 0 {
		c.JWT.MaxTTL = Duration(24 * time.Hour)
	}
	if c.JWT.ClockSkew == 0 {
		c.JWT.ClockSkew = Duration(30 * time.Second)
	}
	if c.ExtProc.Address == "" {
		c.ExtProc.Address = c.ExtProc.Listen
	}
	if c.Approvals.Timeout == 0 {
		c.Approvals.Timeout = Duration(5 * time.Minute)
	}
	if c.Approvals.Validity == 0 {
		c.Approvals.Validity = Duration(15 * time.Minute)
	}
	if c.Audit.Store == "" {
		c.Audit.Store = "audit.db"
	}
	if c.Audit.Durability == "" {
		c.Audit.Durability = "buffered"
	}
	if c.Approvals.Store == "" {
		c.Approvals.Store = "approvals.db"
	}
	if c.Approvals.PageURL == "" && c.Approvals.Listen != "" {
		c.Approvals.PageURL = "https://" + c.Approvals.Listen + "/"
	}
}

var targetName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Validate reports the first problem in the configuration.
func (c *Config) Validate() error {
	var errs []error
	for field, addr := range map[string]string{"envoy.listen": c.Envoy.Listen, "envoy.admin": c.Envoy.Admin, "extproc.listen": c.ExtProc.Listen, "extproc.address": c.ExtProc.Address} {
		if path, unix := UnixPath(addr); unix && strings.HasPrefix(field, "extproc.") {
			if !filepath.IsAbs(path) {
				errs = append(errs, fmt.Errorf("%s: %q: a Unix socket needs an absolute path (unix:///run/sluice/extproc.sock)", field, addr))
			}
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
	}
	if c.Envoy.TLSCert == "" || c.Envoy.TLSKey == "" {
		errs = append(errs, errors.New("envoy.tls_cert and envoy.tls_key are required: tokens never cross the network in clear"))
	}
	if d := c.Audit.Durability; d != "" && d != "buffered" && d != "sync" {
		errs = append(errs, fmt.Errorf("audit.durability %q: buffered or sync", d))
	}
	if c.JWT.Issuer == "" || len(c.JWT.Audiences) == 0 {
		errs = append(errs, errors.New("jwt.issuer and jwt.audiences are required"))
	}
	if (c.JWT.JWKSFile == "") == (c.JWT.JWKSURI == "") {
		errs = append(errs, errors.New("set exactly one of jwt.jwks_file and jwt.jwks_uri"))
	}
	if u := c.JWT.JWKSURI; u != "" {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			errs = append(errs, fmt.Errorf("jwt.jwks_uri %q must be an http(s) URL", u))
		}
	}
	errs = append(errs, c.Guardrails.validate("guardrails", c.Approvals.Listen != "")...)
	for _, t := range c.Targets {
		if t.Guardrails != nil {
			errs = append(errs, t.Guardrails.validate(fmt.Sprintf("target %q: guardrails", t.Name), c.Approvals.Listen != "")...)
		}
	}
	if a := c.Approvals; a.Listen != "" {
		if _, _, err := net.SplitHostPort(a.Listen); err != nil {
			errs = append(errs, fmt.Errorf("approvals.listen: %w", err))
		}
		if a.Timeout >= c.Envoy.IdleTimeout {
			errs = append(errs, fmt.Errorf("approvals.timeout (%s) must be shorter than envoy.idle_timeout (%s): Envoy would cut held statements",
				time.Duration(a.Timeout), time.Duration(c.Envoy.IdleTimeout)))
		}
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
		if t.Protocol != "postgres" && t.Protocol != "mysql" && t.Protocol != "mongodb" {
			errs = append(errs, fmt.Errorf("target %q: protocol must be postgres, mysql or mongodb, not %q", t.Name, t.Protocol))
		}
		if _, _, err := net.SplitHostPort(t.Address); err != nil {
			errs = append(errs, fmt.Errorf("target %q: address: %w", t.Name, err))
		}
		for j, cr := range t.Credentials {
			if cr.User == "" {
				errs = append(errs, fmt.Errorf("target %q: credentials[%d]: user is required", t.Name, j))
			}
			if (cr.PasswordFile == "") == (cr.PasswordEnv == "") {
				errs = append(errs, fmt.Errorf("target %q: credentials[%d]: set exactly one of password_file and password_env", t.Name, j))
			}
		}
	}
	return errors.Join(errs...)
}

// loadSecrets reads the credentials' passwords. A missing one fails the
// load: sluice would otherwise fail every session later, less clearly.
func (c *Config) loadSecrets() error {
	var errs []error
	for i := range c.Targets {
		t := &c.Targets[i]
		for j := range t.Credentials {
			cr := &t.Credentials[j]
			if cr.PasswordEnv != "" {
				v, ok := os.LookupEnv(cr.PasswordEnv)
				if !ok {
					errs = append(errs, fmt.Errorf("target %q: credentials[%d]: environment variable %s is not set", t.Name, j, cr.PasswordEnv))
				}
				cr.password = session.Secret(v)
				continue
			}
			b, err := os.ReadFile(c.Path(cr.PasswordFile))
			if err != nil {
				// The error names the file, never its content.
				errs = append(errs, fmt.Errorf("target %q: credentials[%d]: cannot read password file: %w", t.Name, j, err))
				continue
			}
			line, _, _ := strings.Cut(string(b), "\n")
			cr.password = session.Secret(strings.TrimSuffix(line, "\r"))
		}
	}
	return errors.Join(errs...)
}

// AuditStore is the audit store's URL or SQLite path, resolved ("" if off).
func (c *Config) AuditStore() string {
	if c.Audit.Store == "off" {
		return ""
	}
	s := os.ExpandEnv(c.Audit.Store)
	if strings.Contains(s, "://") {
		return s
	}
	return c.Path(s)
}

// ApprovalStore is the approvals store's URL or SQLite path, resolved.
func (c *Config) ApprovalStore() string {
	s := os.ExpandEnv(c.Approvals.Store)
	if strings.Contains(s, "://") {
		return s
	}
	return c.Path(s)
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
			g := c.GuardrailsFor(t)
			st := session.Target{Name: t.Name, Protocol: t.Protocol, Database: t.Database, Tags: t.Tags, Guardrails: guard.Limits{
				StatementTimeout: time.Duration(g.StatementTimeout), MaxRows: g.MaxRows, MaxBytes: g.MaxBytes,
				StatementsPerSecond: g.StatementsPerSecond, RowsPerMinute: g.RowsPerMinute,
				SlowerThan: time.Duration(g.Pause.SlowerThan), PauseAfter: g.Pause.After, Window: time.Duration(g.Pause.Within),
			}}
			for _, cr := range t.Credentials {
				st.Logins = append(st.Logins, session.Login{Groups: cr.Groups, User: cr.User, Password: cr.password})
			}
			st.Aliases = c.aliasesOf(t)
			return st, true
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

// aliasesOf names the other targets on the same database as t (protocol,
// address and database alike).
func (c *Config) aliasesOf(t Target) []string {
	var out []string
	for _, o := range c.Targets {
		if o.Name != t.Name && o.Protocol == t.Protocol && strings.EqualFold(o.Address, t.Address) && o.Database == t.Database {
			out = append(out, o.Name)
		}
	}
	return out
}

// UnixPath returns the socket path of a unix:///path address.
func UnixPath(addr string) (string, bool) {
	return strings.CutPrefix(addr, "unix://")
}
