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
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sluicedb/sluice/approval"
	"github.com/sluicedb/sluice/audit"
)

// Events reads the audit trail (audit.Store does): one session's events,
// or every session's with "".
type Events interface {
	Events(ctx context.Context, session string) ([]audit.Event, error)
}

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
	"cell": func(v *string) string {
		if v == nil {
			return "NULL"
		}
		return *v
	},
}).ParseFS(files, "templates/*.html"))

// cookie holds the reviewer's token for the console's pages (SameSite
// strict, secure, the console's path only).
const cookie = "sluice_console"

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
			w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
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
		deny(http.StatusUnauthorized, err.Error())
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
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'none'; style-src 'unsafe-inline'")
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

// sameOrigin: a form post came from the console itself (the cookie is
// SameSite strict too).
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return r.Header.Get("Sec-Fetch-Site") == "" || r.Header.Get("Sec-Fetch-Site") == "same-origin"
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
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
	events, err := c.cfg.Events.Events(ctx, "")
	if err != nil {
		return nil, err
	}
	may := c.reviewable(a)
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
	return out, nil
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
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = pages.ExecuteTemplate(w, "list.html", map[string]any{"Reviewer": a.Subject, "Sessions": rows, "Q": r.URL.Query()})
}

func (c *console) listJSON(w http.ResponseWriter, r *http.Request, a approval.Approver) {
	rows, err := c.summaries(r.Context(), a, r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
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
	events, err := c.cfg.Events.Events(r.Context(), id)
	switch {
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return nil, false
	case len(events) == 0:
		http.Error(w, "no session "+id, http.StatusNotFound)
		return nil, false
	case !c.reviewable(a)[events[0].Target]:
		http.Error(w, "this identity may not review sessions on "+events[0].Target, http.StatusForbidden)
		return nil, false
	}
	s := &Session{Events: events}
	rows, _ := c.summaries(r.Context(), a, url.Values{})
	for _, x := range rows {
		if x.ID == id {
			s.Summary = x
		}
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
	_ = pages.ExecuteTemplate(w, "session.html", map[string]any{"Reviewer": a.Subject, "S": s, "Done": r.URL.Query().Get("done")})
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
		if a.Subject == s.Agent || (s.ActingFor != "" && a.Subject == s.ActingFor) {
			http.Error(w, "nobody pauses or resumes their own session", http.StatusForbidden)
			return
		}
		if c.cfg.Sessions == nil {
			http.Error(w, "sessions cannot be paused here", http.StatusNotImplemented)
			return
		}
		var err error
		done := "resumed"
		if pause {
			done = "paused"
			err = c.cfg.Sessions.Pause(s.ID, a.Subject, "paused by "+a.Subject+" from the console")
		} else {
			err = c.cfg.Sessions.Resume(r.Context(), s.ID, a.Subject)
		}
		if errors.Is(err, approval.ErrNoSession) {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.cfg.Logger.Info("session "+done+" from the console", "session", s.ID, "by", a.Subject)
		http.Redirect(w, r, "/console/sessions/"+url.PathEscape(s.ID)+"?done="+done, http.StatusSeeOther)
	}
}
