package policy

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/pingcap/tidb/pkg/parser/mysql"
)

// PinnedPolicy names refusals of settings sluice pins, whatever the
// policies say: they change how the server reads SQL, and sluice must read
// every statement exactly as the server does.
const PinnedPolicy = "pinned-settings"

// How each setting that changes tokenizing is handled (README, "Settings
// sluice pins"):
//
// PostgreSQL parses a whole simple Query before running any of it, and
// sluice parses with libpg_query, which reads SQL as a server with
// standard_conforming_strings on and an ASCII-safe client encoding does.
//   - standard_conforming_strings: pinned on. sluice puts it in the
//     startup message, so RESET, RESET ALL and DISCARD ALL return to it;
//     SET and set_config may only set it on; a server that reports it off
//     (ParameterStatus) ends the session.
//   - backslash_quote: may not be set on (with ASCII-safe encodings it
//     changes nothing but errors; the pin keeps \' out should one ever
//     slip through).
//   - client_encoding: ASCII-safe encodings only (every byte below 0x80 is
//     ASCII), so the server's conversion to its encoding keeps every quote,
//     backslash and semicolon where libpg_query sees it. SJIS, BIG5, GBK,
//     UHC, GB18030, JOHAB and SHIFT_JIS_2004, where 0x5c can end a
//     character, are refused at startup, by SET, by set_config and when
//     the server reports them.
//
// MySQL and MariaDB lex each statement of a multi-statement string under
// the settings the previous ones left, so sluice tracks them and parses
// under them:
//   - sql_mode: tracked. The TiDB parser reads ANSI_QUOTES,
//     NO_BACKSLASH_ESCAPES, PIPES_AS_CONCAT, IGNORE_SPACE and
//     HIGH_NOT_PRECEDENCE as the server does; modes that switch grammars
//     (ORACLE, MSSQL, DB2, POSTGRESQL, MAXDB) and unknown ones are refused.
//     The new mode must be a constant, and the statement setting it must be
//     the last of its string; it applies once the server's OK arrives.
//   - character_set_client (SET NAMES, SET CHARACTER SET, the handshake):
//     ASCII-safe character sets only; big5, cp932, gbk, sjis, gb18030 and
//     anything unknown are refused, and the session's actual value is read
//     after login.

// checkLexical refuses a statement that would change a pinned setting, or
// a tracked one in a way sluice cannot follow.
func checkLexical(dialect string, st Statement) error {
	for _, s := range st.Settings {
		var err error
		switch dialect {
		case "postgres":
			err = checkPGSetting(s)
		case "mysql":
			err = checkMySQLSetting(s)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func checkPGSetting(s Setting) error {
	if s.Name == "" {
		return fmt.Errorf("set_config with a setting name sluice cannot read is refused: some settings change how the server reads SQL (%s)", PinnedPolicy)
	}
	switch s.Name {
	case "standard_conforming_strings", "backslash_quote", "client_encoding":
	default:
		return nil
	}
	pinned := fmt.Sprintf("%s is pinned by sluice, which must read SQL exactly as the server does", s.Name)
	switch {
	case s.Default:
		return nil // back to the startup value sluice set or checked
	case s.Computed:
		return fmt.Errorf("%s: its new value must be a constant", pinned)
	}
	v := strings.ToLower(strings.TrimSpace(s.Value))
	switch s.Name {
	case "standard_conforming_strings":
		if pgBool(v) != "on" {
			return fmt.Errorf("%s: it stays on", pinned)
		}
	case "backslash_quote":
		if v != "safe_encoding" && pgBool(v) != "off" {
			return fmt.Errorf("%s: it may be off or safe_encoding, not %q", pinned, s.Value)
		}
	case "client_encoding":
		if !SafePGEncoding(s.Value) {
			return fmt.Errorf("%s: encoding %q is not ASCII-safe (a backslash or quote byte can end a character in it)", pinned, s.Value)
		}
	}
	return nil
}

// pgBool reads a boolean as PostgreSQL's parse_bool does for the exact
// words ("on", "off", or "" when it is neither).
func pgBool(v string) string {
	switch v {
	case "on", "true", "yes", "1", "t", "y":
		return "on"
	case "off", "false", "no", "0", "f", "n":
		return "off"
	}
	return ""
}

// SafePGEncoding reports whether a PostgreSQL client encoding keeps every
// byte below 0x80 an ASCII character. Names are matched as PostgreSQL
// does: case and punctuation do not count.
func SafePGEncoding(name string) bool {
	return safePGEncodings[cleanEncoding(name)]
}

func cleanEncoding(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// safePGEncodings are PostgreSQL's server encodings and their aliases
// (src/common/encnames.c), cleaned. The client-only encodings (SJIS,
// BIG5, GBK, UHC, GB18030, JOHAB, SHIFT_JIS_2004) are left out on purpose.
var safePGEncodings = set(`
utf8 unicode sqlascii eucjp euccn euckr euctw eucjis2004 muleinternal
latin1 latin2 latin3 latin4 latin5 latin6 latin7 latin8 latin9 latin10
iso88591 iso88592 iso88593 iso88594 iso88599 iso885910 iso885913 iso885914 iso885915 iso885916
iso88595 iso88596 iso88597 iso88598 win1250 win1251 win1252 win1253 win1254 win1255 win1256
win1257 win1258 windows1250 windows1251 windows1252 windows1253 windows1254 windows1255
windows1256 windows1257 windows1258 win866 win874 alt koi8 koi8r koi8u tcvn tcvn5712 vscii
abc
`)

func checkMySQLSetting(s Setting) error {
	switch s.Name {
	case "sql_mode":
		if s.Default || s.Computed {
			return fmt.Errorf("sql_mode changes how the server reads SQL: sluice follows it only when set to a constant (not DEFAULT or an expression) (%s)", PinnedPolicy)
		}
		if _, err := ParseSQLMode(s.Value); err != nil {
			return fmt.Errorf("%w (%s)", err, PinnedPolicy)
		}
	case "character_set_client", "names", "character set":
		if s.Default || s.Computed {
			return fmt.Errorf("the client character set changes how the server reads SQL: sluice follows it only when set to a constant (not DEFAULT or an expression) (%s)", PinnedPolicy)
		}
		if !SafeMySQLCharset(s.Value) {
			return fmt.Errorf("character set %q is not ASCII-safe (a backslash byte can end a character in it): refused (%s)", s.Value, PinnedPolicy)
		}
	}
	return nil
}

// SQLMode is a MySQL sql_mode sluice can parse under.
type SQLMode struct {
	// Text is the mode as the server would report it (upper case, combined
	// modes expanded).
	Text string
	mode mysql.SQLMode
}

// grammarModes switch MariaDB to other grammars or quoting that the TiDB
// parser does not know; mariadbModes are MariaDB's own modes that change
// nothing sluice reads.
var (
	grammarModes = set("ORACLE MSSQL DB2 POSTGRESQL MAXDB")
	mariadbModes = set("IGNORE_BAD_TABLE_OPTIONS EMPTY_STRING_IS_NULL SIMULTANEOUS_ASSIGNMENT TIME_ROUND_FRACTIONAL")
)

// ParseSQLMode reads a sql_mode value ("" is the empty mode).
func ParseSQLMode(text string) (SQLMode, error) {
	var parts, known []string
	for _, p := range strings.Split(strings.ToUpper(text), ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if grammarModes[p] {
			return SQLMode{}, fmt.Errorf("sql_mode %s switches the server to a grammar sluice does not parse: refused", p)
		}
		parts = append(parts, p)
		if !mariadbModes[p] {
			known = append(known, p)
		}
	}
	if p := strings.Join(known, ","); p != "" {
		m, err := mysql.GetSQLMode(mysql.FormatSQLModeStr(p))
		if err != nil {
			return SQLMode{}, fmt.Errorf("sql_mode %q: %v", text, err)
		}
		return SQLMode{Text: strings.Join(parts, ","), mode: m}, nil
	}
	return SQLMode{Text: strings.Join(parts, ",")}, nil
}

// SafeMySQLCharset reports whether a MySQL character set keeps every byte
// below 0x80 an ASCII character, so quotes and backslashes are where the
// TiDB parser sees them. ucs2, utf16 and utf32 cannot be client character
// sets at all.
func SafeMySQLCharset(name string) bool {
	return safeMySQLCharsets[strings.ToLower(strings.Trim(strings.TrimSpace(name), "'\"`"))]
}

var safeMySQLCharsets = set(`
utf8 utf8mb3 utf8mb4 latin1 latin2 latin5 latin7 ascii binary cp1250 cp1251 cp1256 cp1257 cp850
cp852 cp866 dec8 greek hebrew hp8 keybcs2 koi8r koi8u macce macroman armscii8 geostd8 tis620
ujis eucjpms euckr gb2312
`)
