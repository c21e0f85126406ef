package policy

import (
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Statement shapes: the simple protocol sends every literal inline, so
// pgbench's `SELECT abalance FROM pgbench_accounts WHERE aid = 4711` is a
// new text each time, and a full analysis (a cgo parse, the tree, Cedar)
// each time. A shape is the text with its literals masked; a session reuses
// the decision of a shape when it has proven that no literal of it can
// change the decision: the lexer's literals are the server's (checked
// against PostgreSQL's own scanner), each stands where only a value goes
// (not a function argument, a regclass, a sort position, a setting), the
// statement is plain DML without settings or session effects, and no policy
// reads the statement's text.

// literalMark stands for one literal in a shape key. PostgreSQL refuses
// a NUL byte in a query, so no SQL text holds one.
const literalMark = "\x00"

// pgShapeKey masks the literals of sql (standard_conforming_strings on, as
// sluice pins it) and returns the shape and the literals' byte spans. ok is
// false for text whose lexing it does not follow exactly (it then has no
// shape).
func pgShapeKey(sql string) (key string, spans [][2]int, ok bool) {
	lits, ok := pgLiterals(sql)
	if !ok {
		return "", nil, false
	}
	var b strings.Builder
	b.Grow(len(sql))
	last := 0
	for _, l := range lits.spans {
		b.WriteString(sql[last:l.from])
		b.WriteString(literalMark)
		b.WriteByte(l.kind)
		spans = append(spans, [2]int{l.from, l.to})
		last = l.to
	}
	b.WriteString(sql[last:])
	return b.String(), spans, true
}

// literalSpan is one literal: its bytes and its kind ('s' a string, 'e'
// an escape string, 'b'/'x'/'n' prefixed strings, 'd' dollar-quoted, 'n'
// a number).
type literalSpan struct {
	from, to int
	kind     byte
}

type literals struct {
	spans    []literalSpan
	maxParam int // the highest $n parameter in the text
}

// pgLiterals finds the literals of sql as PostgreSQL 15 lexes them with
// standard_conforming_strings on. ok is false for text it does not follow
// exactly: U&'…' and UESCAPE, string continuations, numbers run into
// letters, anything unterminated, NUL bytes.
func pgLiterals(sql string) (out literals, ok bool) {
	if strings.IndexByte(sql, 0) >= 0 {
		return out, false
	}
	lit := func(start, end int, kind byte) {
		out.spans = append(out.spans, literalSpan{start, end, kind})
	}
	i := 0
	for i < len(sql) {
		c := sql[i]
		switch {
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' && sql[i] != '\r' {
				i++
			}
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			depth := 0
			for i < len(sql) {
				if strings.HasPrefix(sql[i:], "/*") {
					depth++
					i += 2
				} else if strings.HasPrefix(sql[i:], "*/") {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
			if depth != 0 {
				return out, false
			}
		case c == '\'':
			end, ok := quoted(sql, i, false)
			if !ok {
				return out, false
			}
			lit(i, end, 's')
			i = end
		case c == '"':
			end := i + 1
			for {
				k := strings.IndexByte(sql[end:], '"')
				if k < 0 {
					return out, false
				}
				end += k + 1
				if end < len(sql) && sql[end] == '"' {
					end++
					continue
				}
				break
			}
			i = end
		case identStart(c):
			start := i
			for i < len(sql) && identChar(sql[i]) {
				i++
			}
			word := sql[start:i]
			if i < len(sql) && sql[i] == '\'' {
				switch strings.ToLower(word) {
				case "e":
					end, ok := quoted(sql, i, true)
					if !ok {
						return out, false
					}
					lit(start, end, 'e')
					i = end
				case "b", "x":
					end, ok := bitString(sql, i)
					if !ok {
						return out, false
					}
					lit(start, end, word[0]|0x20)
					i = end
				case "u":
					return out, false
				}
				// A type name before a string (date '…') is its own token.
			} else if i < len(sql) && sql[i] == '&' && strings.EqualFold(word, "u") {
				return out, false // U&'…' / U&"…" and UESCAPE
			}
		case c == '$':
			// $1 is a parameter; $tag$…$tag$ a dollar-quoted string.
			j := i + 1
			if j < len(sql) && sql[j] >= '0' && sql[j] <= '9' {
				for j < len(sql) && sql[j] >= '0' && sql[j] <= '9' {
					j++
				}
				if j < len(sql) && identChar(sql[j]) {
					return out, false
				}
				n, err := strconv.Atoi(sql[i+1 : j])
				if err != nil {
					return out, false
				}
				out.maxParam = max(out.maxParam, n)
				i = j
				continue
			}
			for j < len(sql) && identChar(sql[j]) && sql[j] != '$' {
				j++
			}
			if j >= len(sql) || sql[j] != '$' || (j > i+1 && !identStart(sql[i+1])) {
				return out, false
			}
			tag := sql[i : j+1]
			k := strings.Index(sql[j+1:], tag)
			if k < 0 {
				return out, false
			}
			end := j + 1 + k + len(tag)
			lit(i, end, 'd')
			i = end
		case c == '.' && i+1 < len(sql) && sql[i+1] == '.':
			i += 2 // "..", one token: "..5" is not ". .5"
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(sql) && sql[i+1] >= '0' && sql[i+1] <= '9':
			end := number(sql, i)
			// What follows must end the number for PostgreSQL 15 as for
			// this lexer: not a letter, digit, '_' or a second '.'.
			if end < len(sql) && (identChar(sql[end]) || sql[end] == '.') {
				return out, false
			}
			lit(i, end, 'n')
			i = end
		default:
			i++
		}
	}
	return out, true
}

// quoted returns the end of the string literal whose quote is at sql[i]:
// a doubled quote stays inside; with escapes (E'…'), a backslash takes the
// next byte. Adjacent literals joined by a newline (PostgreSQL's
// continuation) are refused: they are one token to the server.
func quoted(sql string, i int, escapes bool) (int, bool) {
	j := i + 1
	for j < len(sql) {
		switch sql[j] {
		case '\\':
			if escapes {
				j += 2
				continue
			}
		case '\'':
			if j+1 < len(sql) && sql[j+1] == '\'' {
				j += 2
				continue
			}
			return continued(sql, j)
		}
		j++
	}
	return 0, false
}

// bitString returns the end of a B'…' or X'…' literal whose quote is at
// sql[i]: the first quote ends it (no doubled quotes inside).
func bitString(sql string, i int) (int, bool) {
	k := strings.IndexByte(sql[i+1:], '\'')
	if k < 0 {
		return 0, false
	}
	return continued(sql, i+1+k)
}

// continued returns the end of a literal whose closing quote is at sql[j],
// refusing PostgreSQL's continuation (whitespace with a newline, -- comments
// among it, then a quote), which makes one token of both. \v is
// whitespace to PostgreSQL 16 and later.
func continued(sql string, j int) (int, bool) {
	k := j + 1
	newline := false
	for k < len(sql) {
		if strings.HasPrefix(sql[k:], "--") {
			for k < len(sql) && sql[k] != '\n' && sql[k] != '\r' {
				k++
			}
			continue
		}
		if strings.IndexByte(" \t\n\r\f\v", sql[k]) < 0 {
			break
		}
		newline = newline || sql[k] == '\n' || sql[k] == '\r'
		k++
	}
	if newline && k < len(sql) && sql[k] == '\'' {
		return 0, false
	}
	return j + 1, true
}

// number returns the end of a numeric literal at sql[i]: digits, a point,
// digits, an exponent with digits.
func number(sql string, i int) int {
	j := i
	digits := func() {
		for j < len(sql) && sql[j] >= '0' && sql[j] <= '9' {
			j++
		}
	}
	digits()
	if j < len(sql) && sql[j] == '.' && !(j+1 < len(sql) && sql[j+1] == '.') {
		j++
		digits()
	}
	if j < len(sql) && (sql[j] == 'e' || sql[j] == 'E') {
		k := j + 1
		if k < len(sql) && (sql[k] == '+' || sql[k] == '-') {
			k++
		}
		if k < len(sql) && sql[k] >= '0' && sql[k] <= '9' {
			j = k
			digits()
		}
	}
	return j
}

func identStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
}

func identChar(c byte) bool { return identStart(c) || c >= '0' && c <= '9' || c == '$' }

// constTokens are the scanner's literal tokens.
var constTokens = map[pg.Token]bool{pg.Token_SCONST: true, pg.Token_ICONST: true, pg.Token_FCONST: true,
	pg.Token_BCONST: true, pg.Token_XCONST: true, pg.Token_USCONST: true}

// sameLiterals checks the lexer's literal spans against PostgreSQL's own
// scanner.
func sameLiterals(sql string, spans [][2]int) bool {
	res, err := pg.Scan(sql)
	if err != nil {
		return false
	}
	var got [][2]int
	for _, t := range res.Tokens {
		if constTokens[t.Token] {
			got = append(got, [2]int{int(t.Start), int(t.End)})
		}
	}
	if len(got) != len(spans) {
		return false
	}
	for i := range got {
		if got[i] != spans[i] {
			return false
		}
	}
	return true
}

// valuePlaces are the fields of the nodes a literal may stand under and
// still be only a value: compared, computed with, inserted, returned,
// limited by. Anything else (a function's argument, a sort or group
// position, a type cast to an object name, a table function) may decide
// what the statement does.
var valuePlaces = map[string]bool{
	"RawStmt.stmt": true, "Node.*": true, "List.items": true,
	"SelectStmt.target_list": true, "SelectStmt.where_clause": true, "SelectStmt.values_lists": true,
	"SelectStmt.limit_count": true, "SelectStmt.limit_offset": true, "SelectStmt.having_clause": true,
	"SelectStmt.larg": true, "SelectStmt.rarg": true, "SelectStmt.from_clause": true, "SelectStmt.with_clause": true,
	"InsertStmt.select_stmt": true, "InsertStmt.returning_list": true, "InsertStmt.with_clause": true,
	"UpdateStmt.target_list": true, "UpdateStmt.where_clause": true, "UpdateStmt.from_clause": true,
	"UpdateStmt.returning_list": true, "UpdateStmt.with_clause": true,
	"DeleteStmt.where_clause": true, "DeleteStmt.using_clause": true, "DeleteStmt.returning_list": true, "DeleteStmt.with_clause": true,
	"ResTarget.val": true, "A_Expr.lexpr": true, "A_Expr.rexpr": true, "BoolExpr.args": true, "NullTest.arg": true,
	"BooleanTest.arg": true, "CaseExpr.args": true, "CaseExpr.defresult": true, "CaseExpr.arg": true,
	"CaseWhen.expr": true, "CaseWhen.result": true, "CoalesceExpr.args": true, "A_ArrayExpr.elements": true,
	"RowExpr.args": true, "SubLink.testexpr": true, "SubLink.subselect": true, "JoinExpr.quals": true,
	"JoinExpr.larg": true, "JoinExpr.rarg": true, "RangeSubselect.subquery": true, "WithClause.ctes": true,
	"CommonTableExpr.ctequery": true, "TypeCast.arg": true, "MinMaxExpr.args": true, "NullIfExpr.args": true,
}

// objectTypes are cast targets whose value names a database object or
// setting: a literal cast to one decides what is read.
var objectTypes = map[string]bool{"regclass": true, "regproc": true, "regprocedure": true, "regoper": true,
	"regoperator": true, "regtype": true, "regconfig": true, "regdictionary": true, "regnamespace": true,
	"regrole": true, "regcollation": true, "name": true}

// literalsOnlyValues reports whether every literal of the parsed sql (at
// spans) stands where only a value goes: each is a constant of the tree in
// a value place. A literal the grammar consumes leaves no constant — the
// precision of FLOAT(p) picks float4 or float8, which names a column — so
// it is no value.
func literalsOnlyValues(sql string, spans [][2]int) bool {
	tree, err := pg.Parse(sql)
	if err != nil {
		return false
	}
	ok := true
	consts := map[int]bool{} // the locations of the constants
	var walk func(m protoreflect.Message, place string, underValue bool)
	walk = func(m protoreflect.Message, place string, underValue bool) {
		if !ok {
			return
		}
		name := string(m.Descriptor().Name())
		if name == "A_Const" {
			if !underValue {
				ok = false
			}
			consts[int(m.Interface().(*pg.A_Const).Location)] = true
			return
		}
		if name == "TypeCast" {
			if tn := m.Interface().(*pg.TypeCast).TypeName; tn != nil {
				names := tn.GetNames()
				// _regclass is regclass[] by its array type's name.
				if len(names) == 0 || objectTypes[strings.TrimPrefix(strings.ToLower(names[len(names)-1].GetString_().GetSval()), "_")] ||
					len(names) > 1 && !strings.EqualFold(names[0].GetString_().GetSval(), "pg_catalog") {
					underValue = false
				}
			}
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			if fd.Kind() != protoreflect.MessageKind {
				return true
			}
			field := name + "." + string(fd.Name())
			if name == "Node" {
				field = "Node.*"
			}
			inValue := underValue && valuePlaces[field]
			if fd.IsList() {
				for i := 0; i < v.List().Len(); i++ {
					walk(v.List().Get(i).Message(), field, inValue)
				}
			} else {
				walk(v.Message(), field, inValue)
			}
			return ok
		})
	}
	for _, st := range tree.Stmts {
		walk(st.ProtoReflect(), "", true)
	}
	if !ok {
		return false
	}
	for _, sp := range spans {
		at := sp[0]
		if !consts[at] {
			// A negated number's constant is at its sign: "-1", "- 1".
			for at > 0 && strings.IndexByte("- \t\n\r\f", sql[at-1]) >= 0 {
				at--
				if sql[at] == '-' && consts[at] {
					break
				}
			}
		}
		if !consts[at] || strings.Contains(sql[at:sp[0]], "--") {
			return false
		}
		delete(consts, at)
	}
	return true
}

// shapeSafe reports whether a decision of sql holds for every statement of
// its shape.
func shapeSafe(sql string, spans [][2]int, an Analysis) bool {
	if an.Err != nil || len(an.Statements) == 0 {
		return false
	}
	for _, st := range an.Statements {
		switch st.Kind {
		case "select", "insert", "update", "delete":
		default:
			return false
		}
		if len(st.Settings) > 0 || st.CopyFormat != "" {
			return false
		}
		// A write's lineage into a relation (what a temporary table's
		// columns then derive from) comes from columns, not literals;
		// cursors, prepared statements and DDL are another matter.
		for _, e := range st.Effects {
			if e.Kind != EffectFeedRel {
				return false
			}
		}
	}
	return sameLiterals(sql, spans) && literalsOnlyValues(sql, spans)
}
