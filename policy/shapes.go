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

// literalMask replaces the literals of SQL (pgLiterals) with $n, numbered
// after the statement's own highest parameter, as libpg_query numbers
// them. It gives up on what pgLiterals does not read exactly, and on text
// libpg_query refuses (invalid UTF-8, control characters).
func literalMask(sql string) (string, bool) {
	if !utf8.ValidString(sql) || strings.ContainsFunc(sql, func(r rune) bool { return r < 0x20 && r != '\t' && r != '\n' && r != '\r' }) {
		return "", false // libpg_query refuses some of these (NUL)
	}
	lits, ok := pgLiterals(sql)
	if !ok {
		return "", false
	}
	if len(lits.spans) == 0 {
		return sql, true
	}
	var b strings.Builder
	b.Grow(len(sql))
	at := 0
	for k, sp := range lits.spans {
		b.WriteString(sql[at:sp.from])
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(lits.maxParam + k + 1))
		at = sp.to
	}
	b.WriteString(sql[at:])
	return b.String(), true
}
