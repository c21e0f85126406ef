package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func sessionEvents(t *testing.T, sink Sink, session string, n int) {
	t.Helper()
	c := NewChain(sink)
	if _, err := c.Append(Event{Session: session, Kind: KindSessionOpen, Agent: "bot", Target: "demo", Groups: []string{"analysts"}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if _, err := c.Append(Event{Session: session, Kind: KindStatement, Agent: "bot", Target: "demo",
			Statement: fmt.Sprintf("SELECT * FROM t WHERE id = $%d", i+1), Decision: "allow", Rows: int64(i), LatencyMS: 0.5}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Append(Event{Session: session, Kind: KindSessionClose, Agent: "bot", Target: "demo", BytesIn: 10, BytesOut: 20}); err != nil {
		t.Fatal(err)
	}
}

// Each kind of tampering with the store is detected and names the event.
func TestVerifyDetectsTampering(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name, sql, want string
	}{
		{"intact", "", ""},
		{"edited", `UPDATE sluice_audit SET event = replace(event, '"rows":2', '"rows":999') WHERE session = 's1' AND seq = 4`, "session s1 event 4: content does not match"},
		{"deleted", `DELETE FROM sluice_audit WHERE session = 's1' AND seq = 3`, "session s1 event 4: expected event 3 here"},
		{"reordered", "swap", "session s1 event 4: expected event 3 here"},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, err := OpenStore(ctx, filepath.Join(t.TempDir(), "audit.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			sessionEvents(t, st, "s1", 4)
			sessionEvents(t, st, "s2", 2)
			if c.sql != "" {
				if c.name == "reordered" {
					// Swap the storage order of events 3 and 4 (ids 3 and 4).
					for _, q := range []string{
						`UPDATE sluice_audit SET id = 1000 WHERE session = 's1' AND seq = 3`,
						`UPDATE sluice_audit SET id = 3 WHERE session = 's1' AND seq = 4`,
						`UPDATE sluice_audit SET id = 4 WHERE id = 1000`,
					} {
						if _, err := st.DB().Exec(q); err != nil {
							t.Fatal(err)
						}
					}
				} else if _, err := st.DB().Exec(c.sql); err != nil {
					t.Fatal(err)
				}
			}
			events, err := st.Events(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			problems := Verify(events)
			if c.want == "" {
				if len(problems) != 0 {
					t.Fatalf("intact store: %v", problems)
				}
				return
			}
			if len(problems) == 0 || !strings.HasPrefix(problems[0].String(), c.want) {
				t.Fatalf("got %v, want %q", problems, c.want)
			}
			t.Logf("%s: %s", c.name, problems[0])
		})
	}
}

// The JSON lines match docs/audit-event.schema.json: every field declared
// with its type, the required ones present, nothing undeclared.
func TestJSONLinesMatchSchema(t *testing.T) {
	raw, err := os.ReadFile("../docs/audit-event.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Required   []string `json:"required"`
		Properties map[string]struct {
			Type    string   `json:"type"`
			Enum    []string `json:"enum"`
			Pattern string   `json:"pattern"`
			Format  string   `json:"format"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	sink := NewJSONLines(&buf)
	sessionEvents(t, sink, "s1", 2)
	c := NewChain(sink)
	_, _ = c.Append(Event{Session: "s2", Kind: KindStatement, Agent: "bot", ActingFor: "carol", Target: "demo", Statement: "DROP TABLE t",
		Fingerprint: "pg:abc", Decision: "deny", Reason: "no", Policies: []string{"no-ddl"}, Masked: []string{"email"}, Error: "42501: no",
		Client: map[string]string{"user_agent": "x"}, Instance: "host-1-abc", MaskedCount: map[string]int{"email": 3},
		Result: &Result{Columns: []string{"email"}, Rows: [][]*string{{nil}}, Truncated: true}})
	_, _ = c.Append(Event{Session: "s2", Kind: KindSessionPaused, Agent: "bot", Target: "demo", Reason: "3 slow statements", By: "sluice"})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 6 {
		t.Fatalf("%d lines", len(lines))
	}
	seen := map[string]bool{}
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		for _, r := range schema.Required {
			if _, ok := m[r]; !ok {
				t.Errorf("required %q missing: %s", r, line)
			}
		}
		for k, v := range m {
			seen[k] = true
			p, ok := schema.Properties[k]
			if !ok {
				t.Errorf("field %q is not in the schema", k)
				continue
			}
			ok = true
			switch p.Type {
			case "string":
				s, isStr := v.(string)
				ok = isStr
				if isStr && p.Pattern != "" {
					ok = regexp.MustCompile(p.Pattern).MatchString(s)
				}
				if isStr && p.Format == "date-time" {
					_, err := time.Parse(time.RFC3339Nano, s)
					ok = err == nil
				}
			case "integer":
				f, isNum := v.(float64)
				ok = isNum && f == float64(int64(f))
			case "number":
				_, ok = v.(float64)
			case "array":
				_, ok = v.([]any)
			case "object":
				_, ok = v.(map[string]any)
			case "":
				s, _ := v.(string)
				ok = false
				for _, e := range p.Enum {
					ok = ok || e == s
				}
			}
			if !ok {
				t.Errorf("field %q = %v does not match the schema (%+v)", k, v, p)
			}
		}
	}
	// Every declared field is exercised, so the schema cannot drift.
	for k := range schema.Properties {
		if !seen[k] {
			t.Errorf("schema field %q never produced", k)
		}
	}
	// The chain verifies from the JSON lines alone: as stored, and as
	// decoded then encoded again.
	var parsed, decoded []Event
	for _, line := range lines {
		e, err := Parse([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		parsed = append(parsed, e)
		var d Event
		_ = json.Unmarshal([]byte(line), &d)
		decoded = append(decoded, d)
	}
	if p := Verify(parsed); len(p) != 0 {
		t.Fatalf("JSON lines do not verify: %v", p)
	}
	if p := Verify(decoded); len(p) != 0 {
		t.Fatalf("decoded JSON lines do not verify: %v", p)
	}
	// A line edited in place fails, though it still decodes.
	edited := strings.Replace(lines[1], `"allow"`, `"deny"`, 1)
	e, err := Parse([]byte(edited))
	if err != nil || edited == lines[1] {
		t.Fatalf("cannot edit line: %v", err)
	}
	parsed[1] = e
	if p := Verify(parsed); len(p) != 1 || p[0].Seq != 2 || !strings.Contains(p[0].Msg, "edited") {
		t.Fatalf("edited line: %v", p)
	}
}
