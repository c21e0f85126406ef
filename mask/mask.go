// Package mask rewrites result values: the strategies a masking plan names,
// and content detectors that find sensitive values in any text. A masked
// value stays valid for its column: text stays text; a value whose type
// cannot carry a masked form becomes NULL.
package mask

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Strategy is how a value is masked.
type Strategy string

const (
	Redact  Strategy = "redact"  // fixed marker
	Null    Strategy = "null"    // SQL NULL
	Partial Strategy = "partial" // keep the last N characters (Strategy "partial:N")
	Token   Strategy = "token"   // keyed HMAC: equal inputs give equal tokens
	Email   Strategy = "email"   // keep the domain, hide the local part
)

// RedactedText replaces a redacted value.
const RedactedText = "[redacted]"

// Masker applies strategies. It is safe for concurrent use.
type Masker struct {
	key []byte // HMAC key for tokens; tokens are refused without one
}

// New returns a Masker; key keys deterministic tokens.
func New(key []byte) *Masker { return &Masker{key: key} }

// ParseStrategy validates a strategy name such as "partial:4".
func ParseStrategy(s string) (Strategy, int, error) {
	name, arg, _ := strings.Cut(s, ":")
	switch Strategy(name) {
	case Redact, Null, Token, Email:
		if arg != "" {
			return "", 0, fmt.Errorf("mask strategy %q takes no argument", name)
		}
		return Strategy(name), 0, nil
	case Partial:
		n := 4
		if arg != "" {
			v, err := strconv.Atoi(arg)
			if err != nil || v < 0 {
				return "", 0, fmt.Errorf("mask strategy %q: bad length %q", name, arg)
			}
			n = v
		}
		return Partial, n, nil
	}
	return "", 0, fmt.Errorf("unknown mask strategy %q (redact, null, partial:N, token, email)", s)
}

// Text masks a text value. ok is false when the result is SQL NULL.
func (m *Masker) Text(s Strategy, n int, v []byte) ([]byte, bool) {
	switch s {
	case Null:
		return nil, false
	case Partial:
		if ascii(v) {
			out := make([]byte, len(v))
			keep := len(v) - n // stars before the kept tail
			if keep <= 0 {
				keep = len(v) // too short to keep any of it
			}
			for i := range keep {
				out[i] = '*'
			}
			copy(out[keep:], v[keep:])
			return out, true
		}
		r := []rune(string(v))
		if len(r) <= n {
			return []byte(strings.Repeat("*", len(r))), true
		}
		return []byte(strings.Repeat("*", len(r)-n) + string(r[len(r)-n:])), true
	case Token:
		if len(m.key) == 0 {
			return []byte(RedactedText), true
		}
		return []byte(m.token(v)), true
	case Email:
		at := strings.LastIndexByte(string(v), '@')
		if at <= 0 {
			return []byte(RedactedText), true
		}
		_, size := utf8.DecodeRune(v)
		out := make([]byte, 0, size+3+len(v)-at)
		out = append(out, v[:size]...)
		out = append(out, "***"...)
		return append(out, v[at:]...), true
	}
	return []byte(RedactedText), true
}

func ascii(v []byte) bool {
	for _, c := range v {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func (m *Masker) token(v []byte) string {
	h := hmac.New(sha256.New, m.key)
	h.Write(v)
	sum := h.Sum(nil)
	return "tok_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:10]))
}
