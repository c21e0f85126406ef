package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicedb/sluice/approval"
	"github.com/sluicedb/sluice/audit"
	"github.com/sluicedb/sluice/config"
	"github.com/sluicedb/sluice/console"
	"github.com/sluicedb/sluice/policy"
	"github.com/sluicedb/sluice/sqlstore"
	"github.com/sluicedb/sluice/token"
)

// startApprovals opens the approval store and serves the approvals API and
// page, when approvals.listen is set.
func startApprovals(ctx context.Context, c *config.Config, engine *policy.Engine, sessions approval.Sessions, log *slog.Logger) (*approval.Service, error) {
	a := c.Approvals
	if a.Listen == "" {
		return nil, nil
	}
	store, err := approval.Open(ctx, c.ApprovalStore())
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, func() { store.Close() })
	svc := approval.NewService(ctx, store, approval.Options{
		Logger: log, Timeout: time.Duration(a.Timeout), Validity: time.Duration(a.Validity),
		WebhookURL: a.WebhookURL, PageURL: a.PageURL,
	})
	keys := token.FileKeys(c.Path(c.JWT.JWKSFile))
	if c.JWT.JWKSURI != "" {
		keys = token.URLKeys(c.JWT.JWKSURI, c.Path(c.JWT.JWKSCAFile))
	}
	v := &token.Verifier{Issuer: c.JWT.Issuer, Audiences: c.JWT.Audiences, Keys: keys,
		MaxTTL: time.Duration(c.JWT.MaxTTL), ClockSkew: time.Duration(c.JWT.ClockSkew)}
	authn := approverAuth{v: v, groups: c.JWT.GroupsClaim}
	authz := approverPolicy{engine}
	cert, err := tls.LoadX509KeyPair(c.Path(c.Envoy.TLSCert), c.Path(c.Envoy.TLSKey))
	if err != nil {
		return nil, fmt.Errorf("cannot load the certificate for the approvals API: %w", err)
	}
	l, err := net.Listen("tcp", a.Listen)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s: %w", a.Listen, err)
	}
	handler := approval.Handler(svc, authn, authz, sessions, log)
	if url := c.AuditStore(); url != "" {
		// The console reads the audit trail beside the writer.
		trail, err := audit.OpenStore(ctx, url)
		if err != nil {
			return nil, err
		}
		context.AfterFunc(ctx, func() { trail.Close() })
		var targets []string
		for _, t := range c.Targets {
			targets = append(targets, t.Name)
		}
		ch := console.Handler(console.Config{Events: trail, Authn: authn, Authz: authz, Sessions: sessions,
			Targets: func() []string { return targets }, Logger: log})
		mux := http.NewServeMux()
		mux.Handle("/console", ch)
		mux.Handle("/console/", ch)
		mux.Handle("GET /api/v1/sessions", ch)
		mux.Handle("GET /api/v1/sessions/{id}", ch)
		mux.Handle("/", handler)
		handler = mux
	}
	hs := &http.Server{
		Handler:           handler,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		if err := hs.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("approvals API failed", "err", err)
		}
	}()
	context.AfterFunc(ctx, func() { hs.Close() })
	log.Info("approvals API serving", "addr", l.Addr().String(), "page", a.PageURL, "store", storeKind(c.ApprovalStore()))
	return svc, nil
}

// storeKind names the store without its URL, which may hold a password.
func storeKind(url string) string {
	if sqlstore.IsPostgres(url) {
		return "postgres"
	}
	return "sqlite"
}

type approverAuth struct {
	v      *token.Verifier
	groups string
}

func (a approverAuth) Authenticate(raw string) (approval.Approver, error) {
	id, err := a.v.Verify(raw, a.groups)
	if err != nil {
		return approval.Approver{}, err
	}
	return approval.Approver{Subject: id.Subject, Groups: id.Groups}, nil
}

type approverPolicy struct{ e *policy.Engine }

func (p approverPolicy) MayApprove(a approval.Approver, target string) (bool, string) {
	d := p.e.AuthorizeApprove(a.Subject, a.Groups, target)
	return d.Allowed(), d.Reason
}

// approvalsCmd talks to the approvals API of a running sluice serve.
func approvalsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "sluice approvals: list | show ID | approve ID | deny ID")
		return ErrUsage
	}
	verb, rest := args[0], args[1:]
	var id string
	if verb != "list" {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			fmt.Fprintf(stderr, "sluice approvals %s: a request id is required\n", verb)
			return ErrUsage
		}
		id, rest = rest[0], rest[1:]
	}
	fs := flags("approvals "+verb, stderr)
	cfgPath := fs.String("config", getenv("SLUICE_CONFIG", "sluice.yaml"), "config file (for the server address and CA)")
	server := fs.String("server", getenv("SLUICE_APPROVALS", ""), "approvals API base URL (default https://<approvals.listen>)")
	caFile := fs.String("ca", "", "CA certificate of the approvals API (default tls/ca.crt beside the config)")
	tokFile := fs.String("token-file", getenv("SLUICE_TOKEN_FILE", ""), "file holding your OIDC token (or $SLUICE_TOKEN)")
	status := fs.String("status", "pending", "list: pending, approved, denied, expired or all")
	scope := fs.String("scope", approval.ScopeOnce, "approve: once (this statement) or fingerprint (its shape, for --minutes)")
	minutes := fs.Int("minutes", 0, "approve --scope fingerprint: how long the approval lasts")
	comment := fs.String("comment", "", "a note recorded with the decision")
	if err := parse(fs, rest); err != nil {
		return err
	}
	tok := os.Getenv("SLUICE_TOKEN")
	if *tokFile != "" {
		b, err := os.ReadFile(*tokFile)
		if err != nil {
			return fmt.Errorf("cannot read token: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok == "" {
		return errors.New("sluice approvals: no token (--token-file or $SLUICE_TOKEN)")
	}
	base, ca := *server, *caFile
	if base == "" || ca == "" {
		c, err := config.Load(*cfgPath)
		if err != nil {
			return err
		}
		if base == "" {
			if c.Approvals.Listen == "" {
				return errors.New("approvals are not configured (approvals.listen)")
			}
			base = "https://" + c.Approvals.Listen
		}
		if ca == "" {
			ca = c.Path("tls/ca.crt")
		}
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: token.CAPool(ca)}}}
	var method, path string
	var body any
	switch verb {
	case "list":
		method, path = http.MethodGet, "/api/v1/requests"
		if *status != "all" {
			path += "?status=" + *status
		}
	case "show":
		method, path = http.MethodGet, "/api/v1/requests/"+id
	case "approve":
		method, path = http.MethodPost, "/api/v1/requests/"+id+"/approve"
		body = map[string]any{"scope": *scope, "minutes": *minutes, "comment": *comment}
	case "deny":
		method, path = http.MethodPost, "/api/v1/requests/"+id+"/deny"
		body = map[string]any{"comment": *comment}
	case "pause", "resume": // sluice sessions pause|resume
		method, path = http.MethodPost, "/api/v1/sessions/"+id+"/"+verb
		body = map[string]any{"comment": *comment}
	default:
		fmt.Fprintf(stderr, "sluice approvals: unknown command %q\n", verb)
		return ErrUsage
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(base, "/")+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the approvals API: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.Unmarshal(b, &e)
		return fmt.Errorf("sluice approvals %s: %s: %s", verb, resp.Status, e.Error)
	}
	if verb == "pause" || verb == "resume" {
		var st struct{ Session, Status, By string }
		if err := json.Unmarshal(b, &st); err != nil {
			return fmt.Errorf("cannot read the answer: %w", err)
		}
		fmt.Fprintf(stdout, "session %s is %s (by %s)\n", st.Session, st.Status, st.By)
		return nil
	}
	if verb == "list" {
		var reqs []approval.Request
		if err := json.Unmarshal(b, &reqs); err != nil {
			return fmt.Errorf("cannot read the answer: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATUS\tAGENT\tTARGET\tWAITING\tSTATEMENT")
		for _, r := range reqs {
			who := r.Agent
			if r.ActingFor != "" {
				who += " (for " + r.ActingFor + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Status, who, r.Target, time.Since(r.CreatedAt).Round(time.Second), oneLine(r.Statement, 80))
		}
		return tw.Flush()
	}
	var r approval.Request
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("cannot read the answer: %w", err)
	}
	out, _ := json.MarshalIndent(r, "", "  ")
	fmt.Fprintln(stdout, string(out))
	return nil
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n-1] + "…"
	}
	return s
}
