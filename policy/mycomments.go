package policy

import (
	"errors"
	"strings"
)

// openComments rewrites MySQL executable comments as the server reads
// them, so the TiDB parser (which runs every /*! … */ and no /*M! … */)
// sees what the server runs:
//   - /*! … */ without a version: its content runs;
//   - /*!NNNNN … */ (MariaDB also /*!NNNNNN and /*M!NNNNNN): its content
//     runs if the server's version is at least NNNNN — MariaDB skips MySQL
//     versions 50700–99999 unless marked M — and is a comment otherwise.
//
// Quotes, backticks and comments are followed as the server lexes them
// under env's sql_mode, so a marker inside a string stays text. SQL
// without executable comments is returned as is.
func openComments(sql string, env MySQLSession) (string, error) {
	if !strings.Contains(sql, "/*") {
		return sql, nil
	}
	l := commentLexer{src: sql, env: env, backslash: !env.Mode.mode.HasNoBackslashEscapesMode(), ansi: env.Mode.mode.HasANSIQuotesMode()}
	return l.run()
}

type commentLexer struct {
	src       string
	env       MySQLSession
	backslash bool // backslash escapes in strings
	ansi      bool // "…" is an identifier
	out       strings.Builder
	changed   bool
	inExec    bool // inside an executable comment that runs
}

var errUnterminated = errors.New("unterminated comment")

func (l *commentLexer) run() (string, error) {
	s := l.src
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\'' || c == '"' || c == '`':
			j := l.quoted(i)
			l.out.WriteString(s[i:j])
			i = j
		case c == '#':
			j := lineEnd(s, i)
			l.out.WriteString(s[i:j])
			i = j
		case c == '-' && strings.HasPrefix(s[i:], "--") && (i+2 == len(s) || s[i+2] <= ' ' || s[i+2] == 0x7f):
			j := lineEnd(s, i)
			l.out.WriteString(s[i:j])
			i = j
		case c == '*' && l.inExec && strings.HasPrefix(s[i:], "*/"):
			// The end of a running executable comment: not SQL, but still a
			// break between tokens (an empty comment, not a space, which
			// could make "--" a comment).
			l.out.WriteString(tokenBreak)
			l.inExec, l.changed = false, true
			i += 2
		case c == '/' && strings.HasPrefix(s[i:], "/*"):
			j, err := l.comment(i)
			if err != nil {
				return "", err
			}
			i = j
		default:
			l.out.WriteByte(c)
			i++
		}
	}
	if l.inExec {
		return "", errUnterminated
	}
	if !l.changed {
		return s, nil
	}
	return l.out.String(), nil
}

// quoted returns the end of the string or quoted identifier at i.
func (l *commentLexer) quoted(i int) int {
	s, q := l.src, l.src[i]
	escapes := l.backslash && q != '`' && !(q == '"' && l.ansi)
	for j := i + 1; j < len(s); j++ {
		switch {
		case escapes && s[j] == '\\':
			j++
		case s[j] == q:
			if j+1 < len(s) && s[j+1] == q {
				j++ // a doubled quote
				continue
			}
			return j + 1
		}
	}
	return len(s) // unterminated: the parser reports it
}

func lineEnd(s string, i int) int {
	if j := strings.IndexByte(s[i:], '\n'); j >= 0 {
		return i + j
	}
	return len(s)
}

// comment handles a comment starting at i and returns where it ends.
func (l *commentLexer) comment(i int) (int, error) {
	s := l.src
	rest := s[i+2:]
	mariaMark := l.env.MariaDB && strings.HasPrefix(rest, "M!")
	if !strings.HasPrefix(rest, "!") && !mariaMark && !(l.env.Version == 0 && strings.HasPrefix(rest, "M!")) {
		// A plain comment, to the first */.
		end := strings.Index(rest, "*/")
		if end < 0 {
			return 0, errUnterminated
		}
		l.out.WriteString(s[i : i+2+end+2])
		return i + 2 + end + 2, nil
	}
	if l.inExec {
		return 0, errors.New("an executable comment inside another is refused")
	}
	head := 3 // "/*!"
	if rest[0] == 'M' {
		head = 4
	}
	digits := 0
	for digits < 6 && i+head+digits < len(s) && isDigit(s[i+head+digits]) {
		digits++
	}
	run := true
	switch {
	case digits < 5:
		digits = 0 // not a version: the content runs
	case !l.env.MariaDB && digits == 6:
		digits = 5 // MySQL reads five digits; the sixth is content
		fallthrough
	default:
		version := atoi(s[i+head : i+head+digits])
		switch {
		case l.env.Version == 0:
		case version > l.env.Version:
			run = false
		case l.env.MariaDB && version >= 50700 && version <= 99999 && head == 3:
			run = false // MySQL 5.7+ syntax MariaDB does not claim
		}
	}
	l.changed = true
	if run {
		l.out.WriteString(tokenBreak)
		l.inExec = true
		return i + head + digits, nil
	}
	end, ok := skipComment(s, i+head+digits, 1)
	if !ok {
		return 0, errUnterminated
	}
	l.out.WriteString(tokenBreak)
	return end, nil
}

// tokenBreak stands where a marker or a skipped comment was: it separates
// tokens as the comment did, and unlike a space it cannot turn a "--"
// before it into a line comment.
const tokenBreak = "/**/"

// skipComment finds the end of a comment whose content starts at i, as
// MariaDB's consume_comment does: nesting permits that many inner /* */.
func skipComment(s string, i, nesting int) (int, bool) {
	for i < len(s) {
		switch {
		case nesting > 0 && strings.HasPrefix(s[i:], "/*"):
			end, ok := skipComment(s, i+2, nesting-1)
			if !ok {
				return 0, false
			}
			i = end
		case strings.HasPrefix(s[i:], "*/"):
			return i + 2, true
		default:
			i++
		}
	}
	return 0, false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func atoi(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}
