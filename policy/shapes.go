package policy

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Shapes normalizes PostgreSQL statements without parsing every one.
// Agents send the same statements with other literals (the simple protocol
// inlines them); libpg_query's normalizer parses each anew. Shapes masks the
// literals of plain SQL itself (literalMask) and, the first time it sees a
// shape, checks its result against libpg_query's: where they agree, later
// statements of that shape take the mask; where they do not, or the SQL is
// not plain enough to mask, libpg_query normalizes every time. Not safe for
// concurrent use.
type Shapes struct {
	agreed       map[string]bool   // mask → libpg_query gave the same text
	fingerprints map[string]string // normalized text → fingerprint
}

// Shape returns a statement's normalized text and fingerprint. A
// fingerprint depends on the normalized text alone (the databases derive it
// from the same normalization), so statements differing only in their
// literals share one fingerprinting.
func (s *Shapes) Shape(protocol, sql string) (normalized, fingerprint string) {
	norm := s.Normalize(protocol, sql)
	if norm == Unparseable {
		return norm, Fingerprint(protocol, sql)
	}
	if fp, ok := s.fingerprints[norm]; ok {
		return norm, fp
	}
	fp := Fingerprint(protocol, sql)
	if s.fingerprints == nil || len(s.fingerprints) >= 512 {
		s.fingerprints = map[string]string{}
	}
	s.fingerprints[norm] = fp
	return norm, fp
}

// Normalize is policy.Normalize, remembered by shape.
func (s *Shapes) Normalize(protocol, sql string) string {
	if protocol != "postgres" {
		return Normalize(protocol, sql)
	}
	mask, ok := literalMask(sql)
	if !ok {
		return Normalize(protocol, sql)
	}
	if agreed, seen := s.agreed[mask]; seen {
		if agreed {
			return mask
		}
		return Normalize(protocol, sql)
	}
	norm := Normalize(protocol, sql)
	if s.agreed == nil || len(s.agreed) >= 512 {
		s.agreed = map[string]bool{}
	}
	s.agreed[mask] = norm == mask
	return norm
}

func identByte(c byte) bool {
	return c == '_' || c == '$' || c == '.' || c >= 0x80 || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// literalMask replaces the literals of plain SQL — numbers standing alone
// and '…' strings — with $n, numbered after the statement's own highest
// parameter, as libpg_query numbers them. It gives up on what it does not
// read exactly: comments, quoted identifiers, dollar quotes, prefixed or
// escaped strings, numbers run into letters.
func literalMask(sql string) (string, bool) {
	if !utf8.ValidString(sql) || strings.ContainsFunc(sql, func(r rune) bool { return r < 0x20 && r != '\t' && r != '\n' && r != '\r' }) {
		return "", false // libpg_query refuses some of these (NUL)
	}
	type span struct{ from, to int }
	var spans []span
	maxParam := 0
	for i := 0; i < len(sql); {
		c := sql[i]
		prevIdent := i > 0 && identByte(sql[i-1])
		switch {
		case c == '"' || c == '\\' || c == '-' && i+1 < len(sql) && sql[i+1] == '-' || c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			return "", false
		case c == '$':
			j := i + 1
			for j < len(sql) && sql[j] >= '0' && sql[j] <= '9' {
				j++
			}
			if j == i+1 || prevIdent {
				return "", false // a dollar quote, or $ inside a name
			}
			n, err := strconv.Atoi(sql[i+1 : j])
			if err != nil {
				return "", false
			}
			maxParam = max(maxParam, n)
			i = j
		case c == '\'':
			if prevIdent {
				return "", false // E'…', B'…', X'…', U&'…', N'…'
			}
			j := i + 1
			for {
				k := strings.IndexAny(sql[j:], `'\`)
				if k < 0 || sql[j+k] == '\\' {
					return "", false // unterminated, or backslashes
				}
				j += k + 1
				if j < len(sql) && sql[j] == '\'' {
					j++ // '' inside the string
					continue
				}
				break
			}
			if rest := strings.TrimLeft(sql[j:], " \t\r\n"); strings.HasPrefix(rest, "'") {
				return "", false // continued on the next line
			}
			spans = append(spans, span{i, j})
			i = j
		case !prevIdent && (c >= '0' && c <= '9' || c == '.' && i+1 < len(sql) && sql[i+1] >= '0' && sql[i+1] <= '9'):
			j := i
			for j < len(sql) && (sql[j] >= '0' && sql[j] <= '9' || sql[j] == '.') {
				j++
			}
			if j < len(sql) && identByte(sql[j]) {
				return "", false // 1e5, 0x1f, 1_000, …
			}
			spans = append(spans, span{i, j})
			i = j
		default:
			i++
		}
	}
	if len(spans) == 0 {
		return sql, true
	}
	var b strings.Builder
	b.Grow(len(sql))
	at := 0
	for k, sp := range spans {
		b.WriteString(sql[at:sp.from])
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(maxParam + k + 1))
		at = sp.to
	}
	b.WriteString(sql[at:])
	return b.String(), true
}
