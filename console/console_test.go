package console

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sluicedb/sluice/approval"
	"github.com/sluicedb/sluice/audit"
)

type trail []audit.Event

func (t trail) Events(_ context.Context, s string) ([]audit.Event, error) {
	var out []audit.Event
	for _, e := range t {
		if s == "" || e.Session == s {
			out = append(out, e)
		}
	}
	return out, nil
}
func (t trail) Recent(ctx context.Context, _ int) ([]audit.Event, error) { return t.Events(ctx, "") }

// tokens are "name:group"; dba may review demo, ops may review other.
type authn struct{}

func (authn) Authenticate(raw string) (approval.Approver, error) {
	name, group, ok := strings.Cut(raw, ":")
	if !ok {
		return approval.Approver{}, errors.New("bad token")
	}
	return approval.Approver{Subject: name, Groups: []string{group}}, nil
}

type authz struct{}

func (authz) MayApprove(a approval.Approver, target string) (bool, string) {
	return (a.Groups[0] == "dba" && target == "demo") || (a.Groups[0] == "ops" && target == "other"), ""
}

// live holds sessions "s1" (demo, agent bob) and "s2" (demo, acting for rita).
type live struct{ paused []string }

func (l *live) SessionTarget(id string) (string, string, string, error) {
	switch id {
	case "s1":
		return "demo", "bob", "", nil
	case "s2":
		return "demo", "agent2", "rita", nil
	}
	return "", "", "", approval.ErrNoSession
}
func (l *live) Pause(id, by, _ string) error                 { l.paused = append(l.paused, id+" by "+by); return nil }
func (l *live) Resume(context.Context, string, string) error { return nil }

func TestConsoleAuthorizationAndEscaping(t *testing.T) {
	now := time.Now()
	tr := trail{
		{Session: "s1", Kind: audit.KindSessionOpen, Agent: "bob", Target: "demo", Time: now},
		{Session: "s1", Kind: audit.KindStatement, Agent: "bob", Target: "demo", Time: now, Decision: "deny", Statement: "SELECT '<script>alert(1)</script>'", Policies: []string{"no-ddl"}},
		{Session: "s2", Kind: audit.KindSessionOpen, Agent: "agent2", ActingFor: "rita", Target: "demo", Time: now},
		{Session: "s3", Kind: audit.KindSessionOpen, Agent: "carl", Target: "other", Time: now},
	}
	l := &live{}
	h := Handler(Config{Events: tr, Authn: authn{}, Authz: authz{}, Sessions: l, Targets: func() []string { return []string{"demo", "other"} }})
	do := func(method, path, tok string, form url.Values, origin string) *httptest.ResponseRecorder {
		var body *strings.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		} else {
			body = strings.NewReader("")
		}
		r := httptest.NewRequest(method, "https://console.test"+path, body)
		if form != nil {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if tok != "" {
			r.AddCookie(&http.Cookie{Name: cookie, Value: tok})
		}
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := do("GET", "/console", "", nil, ""); w.Code != 401 {
		t.Errorf("no token: %d", w.Code)
	}
	if w := do("GET", "/console", "bob:analysts", nil, ""); w.Code != 403 {
		t.Errorf("an agent's token: %d", w.Code)
	}
	w := do("GET", "/console", "alice:dba", nil, "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), "s-s1") || strings.Contains(w.Body.String(), "s-s3") {
		t.Errorf("list: %d, shows only demo's sessions? %s", w.Code, w.Body)
	}
	if w := do("GET", "/console/sessions/s3", "alice:dba", nil, ""); w.Code != 404 {
		t.Errorf("another target's session: %d", w.Code)
	}
	w = do("GET", "/console/sessions/s1", "alice:dba", nil, "")
	if w.Code != 200 || strings.Contains(w.Body.String(), "<script>alert") || !strings.Contains(w.Body.String(), "&lt;script&gt;") {
		t.Errorf("statement text not escaped: %s", w.Body)
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "script-src 'none'") {
		t.Errorf("CSP: %q", csp)
	}
	if w := do("POST", "/console/sessions/s1/pause", "alice:dba", url.Values{}, "https://evil.test"); w.Code != 403 || len(l.paused) != 0 {
		t.Errorf("cross-origin pause: %d %v", w.Code, l.paused)
	}
	if w := do("POST", "/console/sessions/s2/pause", "rita:dba", url.Values{}, "https://console.test"); w.Code != 403 || len(l.paused) != 0 {
		t.Errorf("pausing the session one's own agent acts in: %d %v", w.Code, l.paused)
	}
	if w := do("POST", "/console/sessions/s1/pause", "alice:dba", url.Values{}, "https://console.test"); w.Code != 303 || len(l.paused) != 1 {
		t.Errorf("pause: %d %v", w.Code, l.paused)
	}
	if w := do("POST", "/console/login", "", url.Values{"token": {"bob:analysts"}}, "https://console.test"); w.Code != 403 || len(w.Result().Cookies()) != 0 {
		t.Errorf("login with an agent's token: %d", w.Code)
	}
	w = do("POST", "/console/login", "", url.Values{"token": {"alice:dba"}}, "https://console.test")
	if cs := w.Result().Cookies(); w.Code != 204 || len(cs) != 1 || !cs[0].HttpOnly || !cs[0].Secure || cs[0].SameSite != http.SameSiteStrictMode {
		t.Errorf("login: %d %v", w.Code, cs)
	}
	if w := do("GET", "/console/sessions/..%2fx", "alice:dba", nil, ""); w.Code != 404 {
		t.Errorf("odd id: %d", w.Code)
	}
}
