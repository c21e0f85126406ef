package mask

import (
	"strings"
	"testing"
)

func TestStrategies(t *testing.T) {
	m := New([]byte("k"))
	for _, tc := range []struct {
		s    string
		in   string
		want string
		null bool
	}{
		{"redact", "secret", RedactedText, false},
		{"null", "x", "", true},
		{"partial:4", "123-45-6789", "*******6789", false},
		{"partial:4", "abc", "***", false},
		{"email", "jane.doe@example.com", "j***@example.com", false},
		{"email", "not an email", RedactedText, false},
	} {
		s, n, err := ParseStrategy(tc.s)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := m.Text(s, n, []byte(tc.in))
		if ok == tc.null || (!tc.null && string(got) != tc.want) {
			t.Errorf("%s(%q) = %q %v, want %q null=%v", tc.s, tc.in, got, ok, tc.want, tc.null)
		}
	}
	a, _ := m.Text(Token, 0, []byte("a@example.com"))
	b, _ := New([]byte("k")).Text(Token, 0, []byte("a@example.com"))
	c, _ := m.Text(Token, 0, []byte("b@example.com"))
	d, _ := New([]byte("other")).Text(Token, 0, []byte("a@example.com"))
	if string(a) != string(b) || string(a) == string(c) || string(a) == string(d) || !strings.HasPrefix(string(a), "tok_") {
		t.Errorf("tokens: %s %s %s %s", a, b, c, d)
	}
	if _, _, err := ParseStrategy("rot13"); err == nil {
		t.Error("unknown strategy accepted")
	}
}

func TestScrub(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"mail me at jane@example.com please", "mail me at [email] please"},
		{"card 4111 1111 1111 1111 exp 12/30", "card [card] exp 12/30"},
		{"card 4111 1111 1111 1112 is not valid", "card 4111 1111 1111 1112 is not valid"},
		{"ssn 123-45-6789", "ssn [us_ssn]"},
		{"iban GB82 WEST 1234 5698 7654 32", "iban [iban]"},
		{"call +1 415-555-0100", "call [phone]"},
		{"key sk_live_abcdefghijklmnop1234", "key [api_key]"},
		{"tok eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0x.abcdefghijk", "tok [jwt]"},
		{"password = hunter2hunter2", "[secret]"},
		{"nothing here, order 12345", "nothing here, order 12345"},
	} {
		got, _ := Scrub([]byte(tc.in))
		if string(got) != tc.want {
			t.Errorf("Scrub(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
