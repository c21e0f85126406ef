package mask

import (
	"bytes"
	"regexp"
	"strings"
)

// Detector finds one kind of sensitive value in text.
type Detector struct {
	Name  string
	re    *regexp.Regexp
	valid func(string) bool
	// need is a cheap necessary condition for a match (the text and its
	// count of digits): most values skip most regular expressions.
	need func(s []byte, digits int) bool
}

func has(subs ...string) func([]byte, int) bool {
	return func(s []byte, _ int) bool {
		for _, sub := range subs {
			if bytes.Contains(s, []byte(sub)) {
				return true
			}
		}
		return false
	}
}

func digitsAtLeast(n int, subs ...string) func([]byte, int) bool {
	return func(s []byte, digits int) bool { return digits >= n && (len(subs) == 0 || has(subs...)(s, digits)) }
}

func countDigits(s []byte) int {
	n := 0
	for _, c := range s {
		if c >= '0' && c <= '9' {
			n++
		}
	}
	return n
}

// Detectors are the content detectors, a second line behind column tags:
// with detectors on, matches are masked in any text value of any column.
var Detectors = []Detector{
	{Name: "jwt", re: regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`), need: has("eyJ")},
	{Name: "api_key", re: regexp.MustCompile(`\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b|\bAKIA[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{36,}\b|\bxox[abprs]-[A-Za-z0-9-]{10,}\b`), need: has("_live_", "_test_", "AKIA", "gh", "xox")},
	{Name: "secret", re: regexp.MustCompile(`(?i)\b(?:password|passwd|secret|api[_-]?key|token)\s*[:=]\s*\S{6,}`), need: has(":", "=")},
	{Name: "email", re: regexp.MustCompile(`\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b`), need: has("@")},
	{Name: "iban", re: regexp.MustCompile(`\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b`), valid: ibanValid, need: digitsAtLeast(2)},
	{Name: "card", re: regexp.MustCompile(`\b(?:\d[ -]?){12,18}\d\b`), valid: luhn, need: digitsAtLeast(13)},
	{Name: "us_ssn", re: regexp.MustCompile(`\b\d{3}-\d{2}-\d{4}\b`), need: digitsAtLeast(9, "-")},
	{Name: "phone", re: regexp.MustCompile(`(?:\+\d{1,3}[ .-]?)?\(?\b\d{3}\)?[ .-]\d{3}[ .-]\d{4}\b`), need: digitsAtLeast(10)},
}

// Finds reports whether any detector finds a value in s.
func Finds(s []byte) bool {
	digits := countDigits(s)
	for _, d := range Detectors {
		if !d.need(s, digits) {
			continue
		}
		for _, loc := range d.re.FindAllIndex(s, -1) {
			if d.valid == nil || d.valid(string(s[loc[0]:loc[1]])) {
				return true
			}
		}
	}
	return false
}

// Scrub masks every detected value in s and reports how many it found.
func Scrub(s []byte) ([]byte, int) {
	n := 0
	out := s
	digits := countDigits(s) // an upper bound as values are replaced
	for _, d := range Detectors {
		if !d.need(out, digits) {
			continue
		}
		out = d.re.ReplaceAllFunc(out, func(m []byte) []byte {
			if d.valid != nil && !d.valid(string(m)) {
				return m
			}
			n++
			return []byte("[" + d.Name + "]")
		})
	}
	return out, n
}

// luhn checks a card number's checksum.
func luhn(s string) bool {
	sum, double, digits := 0, false, 0
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if c < '0' || c > '9' {
			continue
		}
		d := int(c - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
		digits++
	}
	return digits >= 13 && sum%10 == 0
}

// ibanValid checks the ISO 7064 mod-97 checksum.
func ibanValid(s string) bool {
	s = strings.ReplaceAll(s, " ", "")
	if len(s) < 15 {
		return false
	}
	s = s[4:] + s[:4]
	rem := 0
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			rem = (rem*10 + int(c-'0')) % 97
		case c >= 'A' && c <= 'Z':
			v := int(c-'A') + 10
			rem = (rem*100 + v) % 97
		default:
			return false
		}
	}
	return rem == 1
}
