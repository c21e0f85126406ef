package policy

import "testing"

// The audit trail fingerprints a statement once per normalized text: two
// statements that normalize alike must fingerprint alike, and statements of
// different shape must not.
func TestFingerprintFollowsNormalizedText(t *testing.T) {
	for _, tc := range []struct {
		protocol string
		a, b     string // same shape, other literals
		other    string // another shape
	}{
		{"postgres", "SELECT abalance FROM pgbench_accounts WHERE aid = 42", "SELECT abalance FROM pgbench_accounts WHERE aid = 7", "SELECT bbalance FROM pgbench_branches WHERE bid = 7"},
		{"postgres", "SELECT * FROM t WHERE a IN (1,2,3) AND b = 'x''y' LIMIT 10", "SELECT * FROM t WHERE a IN (4,5,6) AND b = $$z$$ LIMIT 3", "SELECT * FROM t WHERE a IN (1,2,3) OR b = 'x' LIMIT 10"},
		{"postgres", "INSERT INTO t (a,b) VALUES (1, E'\\n')", "INSERT INTO t (a,b) VALUES (2, 'q')", "INSERT INTO u (a,b) VALUES (2, 'q')"},
		{"postgres", "UPDATE t SET a = -1.5e3 WHERE id = 4", "UPDATE t SET a = 8 WHERE id = 9", "UPDATE t SET b = 8 WHERE id = 9"},
		{"postgres", "SET statement_timeout = 0", "SET statement_timeout = '5s'", "SET lock_timeout = 0"},
		{"mysql", "SELECT c FROM sbtest1 WHERE id = 42", "SELECT c FROM sbtest1 WHERE id = 7", "SELECT k FROM sbtest1 WHERE id = 7"},
		{"mysql", "INSERT INTO t (a,b) VALUES (1, 'a'), (2, \"b\")", "INSERT INTO t (a,b) VALUES (3, 'c')", "INSERT INTO u (a,b) VALUES (3, 'c')"},
		{"mysql", "SET SESSION max_execution_time = 0", "SET SESSION max_execution_time = 100", "SET SESSION sql_mode = ''"},
	} {
		na, nb, no := Normalize(tc.protocol, tc.a), Normalize(tc.protocol, tc.b), Normalize(tc.protocol, tc.other)
		fa, fb, fo := Fingerprint(tc.protocol, tc.a), Fingerprint(tc.protocol, tc.b), Fingerprint(tc.protocol, tc.other)
		if na == Unparseable || no == Unparseable {
			t.Fatalf("%s: cannot normalize %q or %q", tc.protocol, tc.a, tc.other)
		}
		if na != nb {
			t.Errorf("%s: %q and %q normalize differently: %q, %q", tc.protocol, tc.a, tc.b, na, nb)
		} else if fa != fb {
			t.Errorf("%s: %q and %q normalize alike (%q) but fingerprint %s vs %s", tc.protocol, tc.a, tc.b, na, fa, fb)
		}
		if na == no || fa == fo {
			t.Errorf("%s: %q and %q are different shapes: normalized %q/%q, fingerprints %s/%s", tc.protocol, tc.a, tc.other, na, no, fa, fo)
		}
		if tc.protocol == "postgres" && fa != Fingerprint(tc.protocol, na) {
			t.Errorf("%q: fingerprint %s, of its normalized text %s", tc.a, fa, Fingerprint(tc.protocol, na))
		}
	}
}
