package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"
)

// consoleGet fetches a console URL with a bearer token (api) or the
// console's cookie (pages) and returns the status and body.
func consoleGet(t *testing.T, path, tok string, cookie bool) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "https://"+stack.Config.Approvals.Listen+path, nil)
	if cookie {
		req.AddCookie(&http.Cookie{Name: "__Host-sluice_console", Value: tok})
	} else {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

// sessionOf finds the session of agent (status "" for any) through the
// console's API.
func sessionOf(t *testing.T, reviewer, agent, status string) string {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		code, body := consoleGet(t, "/api/v1/sessions?agent="+agent+"&status="+status, reviewer, false)
		if code != 200 {
			t.Fatalf("sessions API: %d %s", code, body)
		}
		var list []struct {
			ID         string `json:"id"`
			Agent      string `json:"agent"`
			Statements int    `json:"statements"`
		}
		_ = json.Unmarshal([]byte(body), &list)
		for _, s := range list {
			if s.Agent == agent && s.Statements > 0 {
				return s.ID
			}
		}
	}
	t.Fatalf("no session of %s in the console", agent)
	return ""
}

// TestConsoleInChromium: the sessions console in headless Chromium. The
// list shows a psql session that ran an allowed, a masked and a refused
// statement; its page replays them in order, masked values masked, the
// refusal with its policy, the audit chain intact. A live session is
// paused from its page, and the agent's next statement is held for a
// human. Screenshots of each step are saved.
func TestConsoleInChromium(t *testing.T) {
	chrome, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed (scripts/setup installs it)")
	}
	reviewer, err := stack.MintToken("rita", []string{"dba"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := psql(t, agentConnect(t, "console-agent", []string{"analysts"}),
		"SELECT count(*) FROM orders WHERE id < 10", "SELECT name, email FROM customers WHERE id = 5", "DROP TABLE customers")
	if !strings.Contains(out, "no-ddl") {
		t.Fatalf("psql: %s", out)
	}
	ctx := context.Background()
	live, err := pgx.Connect(ctx, agentConnect(t, "console-live", []string{"analysts"}))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close(ctx)
	if _, err := live.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	done := sessionOf(t, reviewer, "console-agent", "closed")
	liveID := sessionOf(t, reviewer, "console-live", "live")

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox,
		chromedp.Flag("ignore-certificate-errors", true), chromedp.WindowSize(1400, 900))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	cctx, cancel := context.WithTimeout(bctx, 2*time.Minute)
	defer cancel()
	do := func(what string, a chromedp.Action[chromedp.Void]) {
		t.Helper()
		if _, err := chromedp.Run(cctx, a); err != nil {
			t.Fatalf("chromium: %s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(cctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("chromium: read %s: %v", sel, err)
		}
		return s
	}
	shots := map[string]string{}
	shoot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(cctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("chromium: screenshot %s: %v", name, err)
		}
		p := filepath.Join(os.TempDir(), "sluice-console-"+name+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		shots[name] = p
	}
	base := "https://" + stack.Config.Approvals.Listen
	do("open the console with a reviewer's token", chromedp.Navigate(base+"/console#token="+reviewer))
	do("wait for the session's row", chromedp.WaitVisible(chromedp.CSS("#s-"+done)))
	list := text("#sessions")
	if !strings.Contains(list, "console-agent") || !strings.Contains(list, "closed") || !strings.Contains(list, "email") {
		t.Fatalf("sessions list: %q", list)
	}
	shoot("list")

	do("open the session's page", chromedp.Click(chromedp.CSS("#s-"+done+" a")))
	do("wait for the replay", chromedp.WaitVisible(chromedp.CSS("#timeline")))
	timeline, verify := text("#timeline"), text("#verify")
	i1 := strings.Index(timeline, "SELECT count(*) FROM orders")
	i2 := strings.Index(timeline, "SELECT name, email FROM customers")
	i3 := strings.Index(timeline, "DROP TABLE customers")
	if i1 < 0 || i2 < i1 || i3 < i2 {
		t.Fatalf("statements out of order or missing (%d, %d, %d):\n%s", i1, i2, i3, timeline)
	}
	if !strings.Contains(timeline, "***@example.com") || strings.Contains(timeline, "customer5@") ||
		!strings.Contains(timeline, "refused by policy no-ddl") || !strings.Contains(timeline, "masked: email") {
		t.Fatalf("the replay:\n%s", timeline)
	}
	if !strings.Contains(verify, "intact") {
		t.Fatalf("verification: %q", verify)
	}
	shoot("session")

	do("open the live session", chromedp.Navigate(base+"/console/sessions/"+liveID))
	do("wait for Pause", chromedp.WaitVisible(chromedp.CSS("#pause")))
	do("click Pause", chromedp.Click(chromedp.CSS("#pause")))
	do("wait for the confirmation", chromedp.WaitVisible(chromedp.CSS("#done")))
	if d := text("#done"); !strings.Contains(d, "paused") {
		t.Fatalf("after Pause: %q", d)
	}
	shoot("paused")
	held := make(chan error, 1)
	go func() {
		_, err := live.Exec(context.Background(), "SELECT 'after the pause'")
		held <- err
	}()
	approver := tokenFor(t, "alice", []string{"dba"})
	id := pendingFor(t, approver, "after the pause")
	select {
	case err := <-held:
		t.Fatalf("the paused agent's statement ran: %v", err)
	default:
	}
	if o, err := approvals(t, approver, "approve", id); err != nil {
		t.Fatalf("approve: %v %s", err, o)
	}
	if err := <-held; err != nil {
		t.Fatalf("the held statement after approval: %v", err)
	}
	do("wait for Resume", chromedp.WaitVisible(chromedp.CSS("#resume")))
	do("click Resume", chromedp.Click(chromedp.CSS("#resume")))
	do("wait for the confirmation", chromedp.WaitVisible(`//p[@id="done" and contains(., "resumed")]`))
	if d := text("#done"); !strings.Contains(d, "resumed") {
		t.Fatalf("after Resume: %q", d)
	}
	t.Logf("console: list, session %s replayed (verify %q), live session %s paused then its statement held as %s; screenshots %v", done, verify, liveID, id, shots)
}

// TestConsoleRefusesAgentTokens: an agent's token gets 403 on the
// console's pages and API; no token gets 401.
func TestConsoleRefusesAgentTokens(t *testing.T) {
	agent, err := stack.MintToken("nosy-agent", []string{"analysts", "migrators"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path   string
		cookie bool
	}{{"/console", true}, {"/console/sessions/x", true}, {"/api/v1/sessions", false}, {"/api/v1/sessions/x", false}} {
		if code, body := consoleGet(t, tc.path, agent, tc.cookie); code != http.StatusForbidden {
			t.Errorf("%s with an agent's token: %d %s", tc.path, code, body)
		}
		if code, _ := consoleGet(t, tc.path, "", tc.cookie); code != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d", tc.path, code)
		}
	}
	// A form post with an agent's token is refused too.
	req, _ := http.NewRequest("POST", "https://"+stack.Config.Approvals.Listen+"/console/sessions/x/pause", nil)
	req.AddCookie(&http.Cookie{Name: "__Host-sluice_console", Value: agent})
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("pause with an agent's token: %d", resp.StatusCode)
	}
	// Nor may an agent's token become the console's cookie.
	login, _ := http.NewRequest("POST", "https://"+stack.Config.Approvals.Listen+"/console/login", strings.NewReader("token="+agent))
	login.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, err = c.Do(login); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Errorf("login with an agent's token: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
}
