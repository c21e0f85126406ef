package approval

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newService(t *testing.T, opt Options) *Service {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := Open(ctx, filepath.Join(t.TempDir(), "approvals.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return NewService(ctx, st, opt)
}

func request(sql string) *Request {
	return &Request{Agent: "bot", ActingFor: "carol", Target: "demo", Session: "s1", Statement: sql,
		TextHash: TextHash(sql), Fingerprint: "fp:" + strings.Fields(sql)[0], Policies: []string{"p1", "p2"}, Reason: "needs approval", Mode: "hold"}
}

func TestHoldApproveOnce(t *testing.T) {
	ctx := context.Background()
	s := newService(t, Options{Poll: time.Hour}) // only the in-process wake-up
	r := request("DELETE FROM t WHERE id = 1")
	if err := s.Submit(ctx, r); err != nil {
		t.Fatal(err)
	}
	got := make(chan *Request, 1)
	go func() {
		q, err := s.Wait(ctx, r.ID)
		if err != nil {
			t.Error(err)
		}
		got <- q
	}()
	time.Sleep(50 * time.Millisecond)
	if _, err := s.Decide(ctx, r.ID, Decision{Approve: true, By: "alice"}); err != nil {
		t.Fatal(err)
	}
	select {
	case q := <-got:
		if q.Status != Approved || q.Scope != ScopeOnce || q.DecidedBy != "alice" || len(q.Policies) != 2 {
			t.Fatalf("%+v", q)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter was not woken")
	}
	// The waiter used the once-approval: no grant is left for resubmission.
	if g, err := s.Grant(ctx, "bot", "demo", r.Statement, r.Fingerprint); err != nil || g != nil {
		t.Fatalf("grant after use: %+v %v", g, err)
	}
	if _, err := s.Decide(ctx, r.ID, Decision{Approve: false, By: "bob"}); !errors.Is(err, ErrDecided) {
		t.Fatalf("second decision: %v", err)
	}
	if _, err := s.Decide(ctx, "apr_nope", Decision{Approve: true}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
}

func TestTimeoutExpires(t *testing.T) {
	ctx := context.Background()
	s := newService(t, Options{Timeout: 100 * time.Millisecond})
	r := request("DELETE FROM t WHERE id = 2")
	_ = s.Submit(ctx, r)
	q, err := s.Wait(ctx, r.ID)
	if err != nil || q.Status != Expired {
		t.Fatalf("%+v %v", q, err)
	}
	if _, err := s.Decide(ctx, r.ID, Decision{Approve: true}); !errors.Is(err, ErrDecided) {
		t.Fatal("an expired request was approved")
	}
}

func TestGrantsForResubmission(t *testing.T) {
	ctx := context.Background()
	s := newService(t, Options{})
	once := request("DELETE FROM t WHERE id = 3")
	_ = s.Submit(ctx, once)
	_, _ = s.Decide(ctx, once.ID, Decision{Approve: true, By: "alice"})
	// Another agent, another target, another text: no grant.
	for _, c := range [][3]string{{"eve", "demo", once.Statement}, {"bot", "prod", once.Statement}, {"bot", "demo", "DELETE FROM t WHERE id = 4"}} {
		if g, _ := s.Grant(ctx, c[0], c[1], c[2], once.Fingerprint+"x"); g != nil {
			t.Fatalf("grant for %v", c)
		}
	}
	if g, _ := s.Grant(ctx, "bot", "demo", once.Statement, once.Fingerprint); g == nil || g.ID != once.ID {
		t.Fatal("no grant for the approved statement")
	}
	if g, _ := s.Grant(ctx, "bot", "demo", once.Statement, once.Fingerprint); g != nil {
		t.Fatal("a once-approval granted twice")
	}
	// A fingerprint approval covers the statement's shape until it expires.
	fp := request("UPDATE t SET x = 1 WHERE id = 1")
	_ = s.Submit(ctx, fp)
	if _, err := s.Decide(ctx, fp.ID, Decision{Approve: true, Scope: ScopeFingerprint, By: "alice"}); err == nil {
		t.Fatal("a fingerprint approval without a duration")
	}
	if _, err := s.Decide(ctx, fp.ID, Decision{Approve: true, Scope: ScopeFingerprint, For: time.Minute, By: "alice"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if g, _ := s.Grant(ctx, "bot", "demo", "UPDATE t SET x = 2 WHERE id = 9", fp.Fingerprint); g == nil {
			t.Fatal("fingerprint approval not granted")
		}
	}
	list, _ := s.Store().List(ctx, "", 10)
	if len(list) != 2 {
		t.Fatalf("list: %d", len(list))
	}
}

type testAuth struct{}

func (testAuth) Authenticate(b string) (Approver, error) {
	sub, groups, _ := strings.Cut(b, ":")
	if sub == "" {
		return Approver{}, errors.New("bad token")
	}
	return Approver{Subject: sub, Groups: strings.Split(groups, ",")}, nil
}

type testAuthz struct{}

func (testAuthz) MayApprove(a Approver, target string) (bool, string) {
	for _, g := range a.Groups {
		if g == "dba" {
			return true, ""
		}
	}
	return false, "not an approver"
}

func TestHTTPAPIAndWebhook(t *testing.T) {
	ctx := context.Background()
	hooks := make(chan map[string]any, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		_ = json.NewDecoder(r.Body).Decode(&m)
		hooks <- m
	}))
	defer hook.Close()
	s := newService(t, Options{WebhookURL: hook.URL, PageURL: "https://approvals.example/"})
	srv := httptest.NewServer(Handler(s, testAuth{}, testAuthz{}, nil, nil))
	defer srv.Close()
	r := request("DELETE FROM t WHERE id = 5")
	_ = s.Submit(ctx, r)
	m := <-hooks
	if text, _ := m["text"].(string); !strings.Contains(text, r.ID) || !strings.Contains(text, "https://approvals.example/#request="+r.ID) || !strings.Contains(text, "bot (for carol)") {
		t.Fatalf("webhook: %v", m)
	}
	call := func(method, path, tok, body string) int {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		method, path, tok string
		want              int
	}{
		{"GET", "/api/v1/requests", "", 401},
		{"GET", "/api/v1/requests/" + r.ID, "mallory:ops", 403},
		{"POST", "/api/v1/requests/" + r.ID + "/approve", "carol:dba", 403}, // acts for the agent
		{"POST", "/api/v1/requests/" + r.ID + "/approve", "bot:dba", 403},   // the agent itself
		{"POST", "/api/v1/requests/apr_none/approve", "alice:dba", 404},
		{"GET", "/api/v1/requests?status=pending", "alice:dba", 200},
		{"POST", "/api/v1/requests/" + r.ID + "/deny", "alice:dba", 200},
		{"POST", "/api/v1/requests/" + r.ID + "/approve", "alice:dba", 409},
		{"GET", "/", "", 200},
	} {
		if got := call(c.method, c.path, c.tok, `{"comment":"x"}`); got != c.want {
			t.Errorf("%s %s as %q: %d, want %d", c.method, c.path, c.tok, got, c.want)
		}
	}
	q, _ := s.Store().Get(ctx, r.ID)
	if q.Status != Denied || q.DecidedBy != "alice" || q.Comment != "x" {
		t.Fatalf("%+v", q)
	}
}

type testSessions struct{ paused map[string]string }

func (s *testSessions) SessionTarget(id string) (string, string, string, error) {
	if id != "sess-1" {
		return "", "", "", ErrNoSession
	}
	return "demo", "bot", "carol", nil
}

func (s *testSessions) Pause(id, by, reason string) error {
	if s.paused[id] != "" {
		return errors.New("already paused")
	}
	s.paused[id] = by + ": " + reason
	return nil
}

func (s *testSessions) Resume(_ context.Context, id, by string) error {
	if s.paused[id] == "" {
		return errors.New("not paused")
	}
	delete(s.paused, id)
	return nil
}

// Pausing and resuming a live session takes an approver who is neither the
// agent nor the human it acts for.
func TestSessionControlAPI(t *testing.T) {
	sessions := &testSessions{paused: map[string]string{}}
	srv := httptest.NewServer(Handler(newService(t, Options{}), testAuth{}, testAuthz{}, sessions, nil))
	defer srv.Close()
	for _, c := range []struct {
		path, tok string
		want      int
	}{
		{"/api/v1/sessions/sess-1/pause", "", 401},
		{"/api/v1/sessions/sess-1/pause", "mallory:ops", 403},
		{"/api/v1/sessions/sess-1/pause", "bot:dba", 403},
		{"/api/v1/sessions/sess-1/pause", "carol:dba", 403},
		{"/api/v1/sessions/sess-9/pause", "alice:dba", 404},
		{"/api/v1/sessions/sess-1/pause", "alice:dba", 200},
		{"/api/v1/sessions/sess-1/pause", "alice:dba", 409},
		{"/api/v1/sessions/sess-1/resume", "bot:dba", 403},
		{"/api/v1/sessions/sess-1/resume", "alice:dba", 200},
		{"/api/v1/sessions/sess-1/resume", "alice:dba", 409},
	} {
		req, _ := http.NewRequest("POST", srv.URL+c.path, strings.NewReader(`{"comment":"checking"}`))
		if c.tok != "" {
			req.Header.Set("Authorization", "Bearer "+c.tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("POST %s as %q: %d, want %d", c.path, c.tok, resp.StatusCode, c.want)
		}
		if c.want == 200 && strings.HasSuffix(c.path, "/pause") && sessions.paused["sess-1"] != "alice: checking" {
			t.Errorf("pause recorded as %q", sessions.paused["sess-1"])
		}
	}
}
