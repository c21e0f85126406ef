// Package console is the reviewers' web console, served beside the
// approvals API: the sessions agents ran (filterable), each replayed as the
// agent saw it — statements, decisions and their policies, masked results,
// errors, pauses and approvals in time order — with its audit chain's
// verification, and pause and resume for live ones. Pages are rendered on
// the server; the one script moves a token from the URL fragment into a
// cookie. Reviewers are whoever may approve statements on a session's
// target (Cedar's approve action); an agent's token gets 403.
package console

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sluicedb/sluice/approval"
	"github.com/sluicedb/sluice/audit"
)

// Events reads the audit trail (audit.Store does): one session's events,
// and the most recent ones (the sessions list).
type Events interface {
	Events(ctx context.Context, session string) ([]audit.Event, error)
	Recent(ctx context.Context, n int) ([]audit.Event, error)
}

// recentEvents bounds what the sessions list reads: the list covers the
// sessions among the latest events, not the whole trail.
const recentEvents = 20000

// Config wires the console.
type Config struct {
	Events   Events
	Authn    approval.Authenticator
	Authz    approval.Authorizer // MayApprove: who may review a target's sessions
	Sessions approval.Sessions   // live sessions: pause, resume, which are live
	Targets  func() []string     // the configured targets
	Logger   *slog.Logger
}

//go:embed templates/*.html
var files embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"join": strings.Join,
	"ms":   func(d time.Duration) string { return d.Round(time.Millisecond).String() },
	"path": url.PathEscape,
	"cell": func(v *string) string {
		if v == nil {
			return "NULL"
		}
		return *v
	},
}).ParseFS(files, "templates/*.html"))

// cookie holds the reviewer's token for the console's pages: set by the
// server (POST /console/login), HttpOnly, secure, SameSite strict, host-only.
const cookie = "__Host-sluice_console"

// sessionID is the shape of a session id (sluice's UUIDs).
var sessionID = regexp.MustCompile(`^[0-9A-Za-z-]{1,64}$`)

// headers every console answer carries: no framing, no foreign forms.
func secure(w http.ResponseWriter, script bool) {
	csp := "default-src 'self'; script-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
	if script {
		csp = strings.Replace(csp, "script-src 'none'", "script-src 'unsafe-inline'; connect-src 'self'", 1)
	}
	w.Header().Set("Content-Security-Policy", csp)
	w.Header().Set("X-Frame-Options", "DENY")
	// same-origin, not no-referrer: under no-referrer a browser's form
	// posts carry "Origin: null", which sameOrigin refuses.
	w.Header().Set("Referrer-Policy", "same-origin")
}

// Handler serves the console:
//
//	GET  /console                         sessions (?agent= &target= &status=live|closed)
//	GET  /console/sessions/{id}           one session, replayed
//	POST /console/sessions/{id}/pause     (form; same origin)
//	POST /console/sessions/{id}/resume
//	GET  /api/v1/sessions                 the list as JSON
//	GET  /api/v1/sessions/{id}            a session's events and verification as JSON
func Handler(cfg Config) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &console{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /console", c.page(c.list))
	mux.HandleFunc("POST /console/login", c.login)
	mux.HandleFunc("GET /console/sessions/{id}", c.page(c.show))
	mux.HandleFunc("POST /console/sessions/{id}/pause", c.page(c.control(true)))
	mux.HandleFunc("POST /console/sessions/{id}/resume", c.page(c.control(false)))
	mux.HandleFunc("GET /api/v1/sessions", c.api(c.listJSON))
	mux.HandleFunc("GET /api/v1/sessions/{id}", c.api(c.showJSON))
	return mux
}

type console struct{ cfg Config }

// reviewer authenticates the request (bearer header or the console's
// cookie) and checks that the caller may review some target: 401 or 403
// otherwise, already answered.
func (c *console) reviewer(w http.ResponseWriter, r *http.Request, html bool) (approval.Approver, bool) {
	raw, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if raw == "" {
		if ck, err := r.Cookie(cookie); err == nil {
			raw = ck.Value
		}
	}
	deny := func(code int, msg string) {
		if html {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			secure(w, true)
			w.WriteHeader(code)
			_ = pages.ExecuteTemplate(w, "login.html", map[string]any{"Code": code, "Message": msg})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
	}
	if raw == "" {
		deny(http.StatusUnauthorized, "a reviewer's token is required")
		return approval.Approver{}, false
	}
	a, err := c.cfg.Authn.Authenticate(raw)
	if err != nil {
		c.cfg.Logger.Info("console token refused", "err", err)
		deny(http.StatusUnauthorized, "the token is not valid (expired, or not from the configured issuer)")
		return approval.Approver{}, false
	}
	if len(c.reviewable(a)) == 0 {
		deny(http.StatusForbidden, "this identity may review no target's sessions (Cedar's approve action)")
		return approval.Approver{}, false
	}
	return a, true
}

// reviewable are the targets whose sessions a may review.
func (c *console) reviewable(a approval.Approver) map[string]bool {
	out := map[string]bool{}
	for _, t := range c.cfg.Targets() {
		if ok, _ := c.cfg.Authz.MayApprove(a, t); ok {
			out[t] = true
		}
	}
	return out
}

func (c *console) page(next func(http.ResponseWriter, *http.Request, approval.Approver)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && !sameOrigin(r) {
			http.Error(w, "cross-origin form refused", http.StatusForbidden)
			return
		}
		a, ok := c.reviewer(w, r, true)
		if !ok {
			return
		}
		secure(w, false)
		next(w, r, a)
	}
}

func (c *console) api(next func(http.ResponseWriter, *http.Request, approval.Approver)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a, ok := c.reviewer(w, r, false); ok {
			next(w, r, a)
		}
	}
}

// login takes a reviewer's token once (posted by the login page) and keeps
// it in an HttpOnly cookie scripts cannot read.
func (c *console) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-origin login refused", http.StatusForbidden)
		return
	}
	raw := strings.TrimSpace(r.PostFormValue("token"))
	a, err := c.cfg.Authn.Authenticate(raw)
	if err != nil || len(c.reviewable(a)) == 0 {
		c.cfg.Logger.Info("console login refused", "err", err)
		http.Error(w, "not a reviewer's valid token", http.StatusForbidden)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookie, Value: raw, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	w.WriteHeader(http.StatusNoContent)
}

// sameOrigin: a form post came from the console itself (the cookie is
// SameSite strict too).
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin":
		return true
	case "cross-site", "same-site":
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return r.Header.Get("Sec-Fetch-Site") == ""
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// trailError answers a failed read of the audit trail without its detail
// (logged instead).
func (c *console) trailError(w http.ResponseWriter, err error) {
	c.cfg.Logger.Warn("console cannot read the audit trail", "err", err)
	http.Error(w, "the audit trail cannot be read", http.StatusInternalServerError)
}

// Summary is one session in the list.
type Summary struct {
	ID         string        `json:"id"`
	Agent      string        `json:"agent"`
	ActingFor  string        `json:"acting_for,omitempty"`
	Target     string        `json:"target"`
	Start      time.Time     `json:"start"`
	Duration   time.Duration `json:"duration_ns"`
	Statements int           `json:"statements"`
	Refusals   int           `json:"refusals"`
	Masked     []string      `json:"masked_columns,omitempty"`
	Status     string        `json:"status"` // live, closed, cut off
}

func (c *console) summaries(ctx context.Context, a approval.Approver, q url.Values) ([]Summary, error) {
	events, err := c.cfg.Events.Recent(ctx, recentEvents)
	if err != nil {
		return nil, err
	}
	return c.summarize(events, c.reviewable(a), q), nil
}

// summarize folds events into one Summary per session on a target in may,
// filtered by q, newest first.
func (c *console) summarize(events []audit.Event, may map[string]bool, q url.Values) []Summary {
	by := map[string]*Summary{}
	var order []string
	last := map[string]time.Time{}
	closed := map[string]bool{}
	for _, e := range events {
		s := by[e.Session]
		if s == nil {
			s = &Summary{ID: e.Session, Agent: e.Agent, ActingFor: e.ActingFor, Target: e.Target, Start: e.Time}
			by[e.Session] = s
			order = append(order, e.Session)
		}
		last[e.Session] = e.Time
		switch e.Kind {
		case audit.KindStatement:
			s.Statements++
			if e.Decision != "allow" {
				s.Refusals++
			}
			for _, m := range e.Masked {
				if !slices.Contains(s.Masked, m) {
					s.Masked = append(s.Masked, m)
				}
			}
		case audit.KindSessionClose:
			closed[e.Session] = true
		}
	}
	var out []Summary
	for _, id := range order {
		s := by[id]
		if !may[s.Target] {
			continue
		}
		s.Status = c.status(id, closed[id])
		end := last[id]
		if s.Status == "live" {
			end = time.Now()
		}
		s.Duration = end.Sub(s.Start)
		if f := q.Get("agent"); f != "" && !strings.Contains(s.Agent, f) {
			continue
		}
		if f := q.Get("target"); f != "" && s.Target != f {
			continue
		}
		if f := q.Get("status"); f != "" && s.Status != f {
			continue
		}
		out = append(out, *s)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.After(out[j].Start) })
	return out
}

func (c *console) status(id string, closed bool) string {
	switch {
	case closed:
		return "closed"
	case c.cfg.Sessions != nil:
		if _, _, _, err := c.cfg.Sessions.SessionTarget(id); err == nil {
			return "live"
		}
	}
	return "cut off"
}

func (c *console) list(w http.ResponseWriter, r *http.Request, a approval.Approver) {
	rows, err := c.summaries(r.Context(), a, r.URL.Query())
	if err != nil {
		c.trailError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = pages.ExecuteTemplate(w, "list.html", map[string]any{"Reviewer": a.Subject, "Sessions": rows, "Q": r.URL.Query()})
}

func (c *console) listJSON(w http.ResponseWriter, r *http.Request, a approval.Approver) {
	rows, err := c.summaries(r.Context(), a, r.URL.Query())
	if err != nil {
		c.trailError(w, err)
		return
	}
	if rows == nil {
		rows = []Summary{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(rows)
}

// Session is one session, replayed.
type Session struct {
	Summary
	Events   []audit.Event `json:"events"`
	Verified bool          `json:"verified"`
	Problems []string      `json:"problems,omitempty"`
}

// load reads the session named in the path, if a may review it;
// otherwise it has answered.
func (c *console) load(w http.ResponseWriter, r *http.Request, a approval.Approver) (*Session, bool) {
	id := r.PathValue("id")
	if !sessionID.MatchString(id) {
		http.Error(w, "no such session", http.StatusNotFound)
		return nil, false
	}
	events, err := c.cfg.Events.Events(r.Context(), id)
	if err != nil {
		c.trailError(w, err)
		return nil, false
	}
	// Every event's target must be reviewable (one id, one target; a
	// trail that says otherwise is not shown).
	may := c.reviewable(a)
	if len(events) == 0 || slices.ContainsFunc(events, func(e audit.Event) bool { return !may[e.Target] }) {
		http.Error(w, "no such session, or not one this identity may review", http.StatusNotFound)
		return nil, false
	}
	s := &Session{Events: events}
	if sums := c.summarize(events, may, url.Values{}); len(sums) == 1 {
		s.Summary = sums[0]
	}
	for _, p := range audit.Verify(events) {
		s.Problems = append(s.Problems, p.String())
	}
	s.Verified = len(s.Problems) == 0
	return s, true
}

func (c *console) show(w http.ResponseWriter, r *http.Request, a approval.Approver) {
	s, ok := c.load(w, r, a)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	done := r.URL.Query().Get("done")
	if done != "paused" && done != "resumed" {
		done = ""
	}
	_ = pages.ExecuteTemplate(w, "session.html", map[string]any{"Reviewer": a.Subject, "S": s, "Done": done})
}

func (c *console) showJSON(w http.ResponseWriter, r *http.Request, a approval.Approver) {
	if s, ok := c.load(w, r, a); ok {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s)
	}
}

// control pauses or resumes a live session from its page, then shows it
// again.
func (c *console) control(pause bool) func(http.ResponseWriter, *http.Request, approval.Approver) {
	return func(w http.ResponseWriter, r *http.Request, a approval.Approver) {
		s, ok := c.load(w, r, a)
		if !ok {
			return
		}
		if c.cfg.Sessions == nil {
			http.Error(w, "sessions cannot be paused here", http.StatusNotImplemented)
			return
		}
		// Decided on the live session itself, as the approvals API does:
		// its target and agent, not the trail's account of them.
		id := r.PathValue("id")
		target, agent, actingFor, err := c.cfg.Sessions.SessionTarget(id)
		if err != nil {
			http.Error(w, "the session is not live on this sluice", http.StatusConflict)
			return
		}
		if !c.reviewable(a)[target] || target != s.Events[0].Target {
			http.Error(w, "not a session this identity may review", http.StatusForbidden)
			return
		}
		if a.Subject == agent || (actingFor != "" && a.Subject == actingFor) {
			http.Error(w, "nobody pauses or resumes their own session", http.StatusForbidden)
			return
		}
		done := "resumed"
		if pause {
			done = "paused"
			err = c.cfg.Sessions.Pause(id, a.Subject, "paused by "+a.Subject+" from the console")
		} else {
			err = c.cfg.Sessions.Resume(r.Context(), id, a.Subject)
		}
		if errors.Is(err, approval.ErrNoSession) {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.cfg.Logger.Info("session "+done+" from the console", "session", id, "by", a.Subject)
		http.Redirect(w, r, "/console/sessions/"+url.PathEscape(id)+"?done="+done, http.StatusSeeOther)
	}
}
