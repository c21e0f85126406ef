package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pingcap/tidb/pkg/parser"
)

// openComments rewrites MySQL SQL into the text the TiDB parser reads as
// the server does. The pass lexes the string as MariaDB's lexer does
// under env's sql_mode (quotes, backticks, comments) and:
//   - opens executable comments as the server reads them (the TiDB parser
//     runs every /*! … */ and no /*M! … */): /*! … */ without a version
//     runs; /*!NNNNN … */ (MariaDB also /*!NNNNNN and /*M!NNNNNN) runs if
//     the server's version is at least NNNNN — MariaDB skips MySQL
//     versions 50700–99999 unless marked M — and is a comment otherwise;
//   - replaces every comment with an empty one, so the TiDB parser never
//     reads a comment's content (optimizer hints, /*T! … */, and line
//     comments the server ends at a byte the TiDB parser does not);
//   - writes ANSI_QUOTES identifiers ("…") with backticks: the TiDB parser
//     reads them as strings, with backslash escapes, the server does not;
//   - refuses, outside quotes, bytes the two lexers classify differently:
//     control characters, non-ASCII bytes (a letter, a space or a symbol by
//     the client character set's tables: 0xA0 is a space in latin1), a
//     "--" followed by one, and NUL in a line comment (which ends it).
//
// SQL that needs none of this is returned as is.
func openComments(sql string, env MySQLSession) (string, error) {
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

// ErrServerLexing marks SQL the server's lexer and sluice's parser would
// read differently; it is refused.
var ErrServerLexing = errors.New("read differently by the server")

func (l *commentLexer) run() (string, error) {
	s := l.src
	l.out.Grow(len(s))
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\'' || c == '"' || c == '`':
			j := l.quoted(i)
			if c == '"' && l.ansi && j > i+1 && s[j-1] == '"' {
				l.backtick(s[i+1 : j-1])
			} else {
				l.out.WriteString(s[i:j])
			}
			i = j
		case c == '#' || c == '-' && strings.HasPrefix(s[i:], "--") && (i+2 == len(s) || s[i+2] <= ' ' || s[i+2] == 0x7f):
			// A line comment, to the end of the line; the server also ends
			// it at NUL, then fails on the NUL.
			j := lineEnd(s, i)
			if strings.IndexByte(s[i:j], 0) >= 0 {
				return "", fmt.Errorf("a NUL byte in a line comment: %w", ErrServerLexing)
			}
			l.out.WriteString(tokenBreak)
			l.changed = true
			i = j
		case c == '-' && strings.HasPrefix(s[i:], "--") && i+2 < len(s) && s[i+2] >= 0x80:
			return "", fmt.Errorf(`"--" followed by a non-ASCII byte: whether it starts a comment depends on the client character set: %w`, ErrServerLexing)
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
		case c == ';' && l.inExec:
			// The server starts each statement of a string afresh, outside
			// any comment: the "*/" after this would not end one.
			return "", fmt.Errorf("a statement boundary inside an executable comment: %w", ErrServerLexing)
		case (isDigit(c) || c == '.' && i+1 < len(s) && isDigit(s[i+1])) && l.tokenStart(i) && numberHazard(s, i):
			return "", fmt.Errorf("a number the server reads otherwise (an exponent without digits, 0X…, 0x or 0b followed by letters): %w", ErrServerLexing)
		case wordByte(c) && l.tokenStart(i) && keywordBeforeDot(s, i):
			return "", fmt.Errorf("a keyword before \".\" and a quote or space: the server reads the keyword, then a table of the current database: %w", ErrServerLexing)
		case c >= 0x80:
			return "", fmt.Errorf("a non-ASCII byte outside quotes: the server reads it by the client character set (as a letter, a space or a symbol); quote identifiers with backticks: %w", ErrServerLexing)
		case c < ' ' && !asciiSpace(c) || c == 0x7f:
			return "", fmt.Errorf("control character 0x%02x outside quotes: %w", c, ErrServerLexing)
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

// asciiSpace: the bytes both lexers skip between tokens.
func asciiSpace(c byte) bool { return c == ' ' || c >= '\t' && c <= '\r' }

// backtick writes the ANSI_QUOTES identifier whose text (between the
// quotes) is body as a backtick identifier with the same name.
func (l *commentLexer) backtick(body string) {
	name := strings.ReplaceAll(body, `""`, `"`)
	l.out.WriteByte('`')
	l.out.WriteString(strings.ReplaceAll(name, "`", "``"))
	l.out.WriteByte('`')
	l.changed = true
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
		if hint := strings.ToUpper(rest[:end]); !l.env.MariaDB && strings.HasPrefix(hint, "+") &&
			(strings.Contains(hint, "SET_VAR") || strings.Contains(hint, "MAX_EXECUTION_TIME")) {
			// MySQL runs optimizer hints: these would change the session's
			// settings (the guardrails' timeout among them) for a statement.
			return 0, fmt.Errorf("optimizer hints SET_VAR and MAX_EXECUTION_TIME change settings sluice holds: refused")
		}
		l.out.WriteString(tokenBreak)
		l.changed = true
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
		next := i + head + 6
		switch {
		case l.env.Version >= 80100 && next < len(s) && asciiSpace(s[next]):
			// MySQL 8.1+ reads six digits when whitespace follows them.
		case l.env.Version == 0:
			return 0, fmt.Errorf("a six-digit version comment whose reading depends on the MySQL version: %w", ErrServerLexing)
		default:
			digits = 5 // MySQL reads five digits; the sixth is content
		}
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

// wordByte: a byte of an unquoted MySQL identifier (ASCII).
func wordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || isDigit(c) || c == '_' || c == '$'
}

// tokenStart: the byte at i begins a token (it does not continue a word
// or follow a qualifying ".").
func (l *commentLexer) tokenStart(i int) bool {
	return i == 0 || !wordByte(l.src[i-1]) && l.src[i-1] != '.'
}

// numberHazard reports a number at i that MariaDB's lexer and the TiDB
// parser read differently: an exponent without digits (the server drops
// the number and returns the byte after "e" or its sign as a token of its
// own — a "-" before "-", a "*" before "/"), an exponent followed by
// letters, "0X"/"0B" (an identifier to the server, a literal to TiDB), and
// 0x… or 0b… followed by letters.
func numberHazard(s string, i int) bool {
	j := i
	for j < len(s) && isDigit(s[j]) {
		j++
	}
	if s[i] == '0' && j == i+1 && j < len(s) {
		switch p := s[j]; p {
		case 'X', 'B':
			return true
		case 'x', 'b':
			k := j + 1
			for k < len(s) && (p == 'x' && isHex(s[k]) || p == 'b' && (s[k] == '0' || s[k] == '1')) {
				k++
			}
			return k < len(s) && wordByte(s[k])
		}
	}
	if j < len(s) && s[j] == '.' {
		j++
		for j < len(s) && isDigit(s[j]) {
			j++
		}
	}
	if j >= len(s) || s[j] != 'e' && s[j] != 'E' {
		return false
	}
	k := j + 1
	if k < len(s) && (s[k] == '+' || s[k] == '-') {
		k++
	}
	if k >= len(s) || !isDigit(s[k]) {
		return true
	}
	for k < len(s) && isDigit(s[k]) {
		k++
	}
	return k < len(s) && wordByte(s[k])
}

func isHex(c byte) bool { return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// keywordBeforeDot reports a keyword at i directly followed by "." and a
// byte that cannot continue an identifier: the server then keeps the
// keyword and reads ".name" as a table of the current database, the TiDB
// parser reads "keyword.name" as a qualified name.
func keywordBeforeDot(s string, i int) bool {
	j := i
	for j < len(s) && wordByte(s[j]) {
		j++
	}
	if j+1 > len(s) || j == len(s) || s[j] != '.' || j+1 < len(s) && wordByte(s[j+1]) {
		return false
	}
	return mysqlKeywords[strings.ToUpper(s[i:j])]
}

// mysqlKeywords are the TiDB parser's keywords and MariaDB's reserved
// words it does not know.
var mysqlKeywords = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range parser.Keywords {
		m[k.Word] = true
	}
	for _, w := range strings.Fields(`ACCESSIBLE ASENSITIVE BODY CURRENT_ROLE DELETE_DOMAIN_ID DO_DOMAIN_IDS
		ELSIF EXCEPT GENERAL GOTO IGNORE_DOMAIN_IDS IGNORE_SERVER_IDS INTERSECT MASTER_HEARTBEAT_PERIOD
		MASTER_SSL_VERIFY_SERVER_CERT OFFSET PACKAGE PAGE_CHECKSUM PARSE_VCOL_EXPR POSITION RAISE
		REF_SYSTEM_ID RETURNING ROWNUM ROWTYPE SLOW SPECIFIC SQLEXCEPTION SQLSTATE SQLWARNING
		STATS_AUTO_RECALC STATS_PERSISTENT STATS_SAMPLE_PAGES UNLOCK USAGE`) {
		m[w] = true
	}
	return m
}()
