package mask

import (
	"regexp"
	"strings"
)

// Detector finds one kind of sensitive value in text.
type Detector struct {
	Name  string
	re    *regexp.Regexp
	valid func(string) bool
}

// Detectors are the content detectors, a second line behind column tags:
// with detectors on, matches are masked in any text value of any column.
var Detectors = []Detector{
	{Name: "jwt", re: regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`)},
	{Name: "api_key", re: regexp.MustCompile(`\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b|\bAKIA[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{36,}\b|\bxox[abprs]-[A-Za-z0-9-]{10,}\b`)},
	{Name: "secret", re: regexp.MustCompile(`(?i)\b(?:password|passwd|secret|api[_-]?key|token)\s*[:=]\s*\S{6,}`)},
	{Name: "email", re: regexp.MustCompile(`\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b`)},
	{Name: "iban", re: regexp.MustCompile(`\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b`), valid: ibanValid},
	{Name: "card", re: regexp.MustCompile(`\b(?:\d[ -]?){12,18}\d\b`), valid: luhn},
	{Name: "us_ssn", re: regexp.MustCompile(`\b\d{3}-\d{2}-\d{4}\b`)},
	{Name: "phone", re: regexp.MustCompile(`(?:\+\d{1,3}[ .-]?)?\(?\b\d{3}\)?[ .-]\d{3}[ .-]\d{4}\b`)},
}

// Finds reports whether any detector finds a value in s.
func Finds(s []byte) bool {
	for _, d := range Detectors {
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
	for _, d := range Detectors {
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
