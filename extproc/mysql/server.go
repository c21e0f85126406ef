package mysql

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/mask"
	"github.com/sluicedb/sluice/policy"
)

type respKind int

const (
	respNone    respKind = iota // no answer expected
	respSingle                  // one packet: OK, ERR, EOF or a string (COM_PING, COM_STATISTICS, …)
	respResult                  // OK, ERR or result sets (COM_QUERY, COM_STMT_EXECUTE, COM_STMT_FETCH)
	respPrepare                 // COM_STMT_PREPARE_OK and definitions
)

type respState int

const (
	stStart   respState = iota // OK, ERR, LOCAL INFILE or a column count
	stColumns                  // column definitions
	stColEOF                   // EOF after the definitions
	stRows                     // rows until EOF/OK
	stDone
	// PREPARE_OK is followed by parameter and column definitions, each
	// list ended by EOF unless the client deprecated it.
	stPrepParams
	stPrepParamsEOF
	stPrepCols
	stPrepColsEOF
)

// response tracks the answer to the command in flight.
type response struct {
	kind   respKind
	dec    policy.Decision
	rec    *session.StatementRecord // reported when the answer is complete
	binary bool                     // binary result rows (COM_STMT_EXECUTE, COM_STMT_FETCH)
	sql    string                   // COM_STMT_PREPARE, COM_STMT_EXECUTE
	env    policy.MySQLSession      // COM_STMT_PREPARE: the state it reads under
	stmtID uint32                   // COM_STMT_*: the statement
	// cursor: the execute asked for a cursor; fetch: the cursor a
	// COM_STMT_FETCH reads.
	cursor bool
	fetch  *cursor
	// resetStmt, resetConn: COM_STMT_RESET, COM_RESET_CONNECTION, whose OK
	// changes state.
	resetStmt, resetConn bool
	state                respState
	stmt                 int // which statement of a multi-statement answers now
	cols                 []column
	left                 int // definitions still to come
	prepCols             int // PREPARE_OK: column definitions after the parameters'
	plan                 map[int]*mask.Rule
	inRow                bool // inside a row of 16 MB or more, passed through
	// rows and bytes of the result so far (guardrails); cut: past them, the
	// client got ERR and the rest is dropped.
	rows, bytes int64
	cut         bool
}

// awaiting reports whether the server still owes (part of) the answer.
func (r *response) awaiting() bool { return r.kind != respNone && r.state != stDone }

type column struct {
	typ     byte
	charset uint16
}

// MySQL column types whose values are strings in both protocols.
func (c column) text() bool {
	switch c.typ {
	case 15, 253, 254, 249, 250, 251, 252:
		return c.charset != 63 // binary collation: bytes, not text
	}
	return false
}

func (s *Session) serverPacket(p phys, out *session.Output) error {
	switch s.phase {
	case phaseGreeting:
		return s.greeting(p, out)
	case phaseHandshake:
		out.ToClient = append(out.ToClient, p.raw...)
		return nil
	case phaseAuth:
		if s.login != nil {
			toClient, done, err := s.login.serverAuth(p, out)
			if err != nil {
				return err
			}
			if done {
				s.phase = phaseCommand
			} else if len(toClient) > 0 {
				s.log.Warn("the database refused sluice's login", "db_user", s.login.login.User)
			}
			out.ToClient = append(out.ToClient, toClient...)
			if done {
				s.startSetup(out)
			}
			return nil
		}
		out.ToClient = append(out.ToClient, p.raw...)
		if p.cont || len(p.payload) == 0 {
			return nil
		}
		switch p.payload[0] {
		case 0x00:
			s.phase = phaseCommand
			s.startSetup(out)
		case 0xFF:
		case 0xFE: // auth switch: the client answers
			s.authTurn = true
		case 0x01: // more auth data; 0x03 is caching_sha2's fast-auth success
			s.authTurn = !(len(p.payload) == 2 && p.payload[1] == 0x03)
		default:
			s.authTurn = true
		}
		return nil
	}
	if len(s.setup) > 0 {
		return s.setupAnswer(p, out)
	}
	if !s.resp.awaiting() {
		// Nothing asked: a server's last words (ERR on shutdown, on a kill).
		out.ToClient = append(out.ToClient, p.raw...)
		return nil
	}
	inRows := s.resp.state == stRows
	err := s.responsePacket(p, out)
	s.finishRecord(p, inRows)
	if err != nil || s.resp.state != stDone {
		return err
	}
	s.resp.cut = false
	if s.resetPending {
		s.resetPending = false
		s.startSetup(out)
		return nil
	}
	return s.replayBacklog(out)
}

// finishRecord notes rows and errors of the answer in flight and reports
// the statement's record once the answer is complete; inRows: p came
// where rows do (not the column definition that led to them).
func (s *Session) finishRecord(p phys, inRows bool) {
	r := &s.resp
	if r.rec == nil || p.cont {
		return
	}
	b := p.payload
	switch {
	case inRows && r.state == stRows && !r.cut && len(b) > 0 && b[0] != 0xFF && !s.eofLike(b):
		r.rec.Rows++
	case len(b) > 3 && b[0] == 0xFF:
		msg := b[3:]
		if len(msg) > 6 && msg[0] == '#' {
			msg = msg[6:]
		}
		r.rec.Error = fmt.Sprintf("%d: %s", binary.LittleEndian.Uint16(b[1:]), msg)
	case len(b) > 1 && b[0] == 0x00 && r.state == stDone && r.rec.Rows == 0:
		if n, _, _, ok := lenenc(b[1:]); ok {
			r.rec.Rows = int64(n) // affected rows
		}
	}
	if r.state == stDone {
		r.rec.End = time.Now()
		s.cfg.Observer.Statement(*r.rec)
		r.rec = nil
	}
}

// greeting clears capabilities sluice cannot allow: TLS inside the tunnel,
// compression, LOCAL INFILE and query attributes.
func (s *Session) greeting(p phys, out *session.Output) error {
	b := append([]byte(nil), p.payload...)
	if len(b) > 0 && b[0] == 0xFF {
		out.ToClient = append(out.ToClient, p.raw...)
		return nil
	}
	if len(b) < 1 || b[0] != 10 {
		return &ProtocolError{"not a protocol 10 handshake"}
	}
	i := bytes.IndexByte(b[1:], 0)
	if i < 0 {
		return &ProtocolError{"malformed handshake"}
	}
	s.mariadb = bytes.Contains(b[1:1+i], []byte("MariaDB"))
	s.cfg.Authorizer.SetServer(versionID(string(b[1:1+i])), s.mariadb)
	pos := 1 + i + 1 + 4 + 8 + 1
	if len(b) < pos+2 {
		return &ProtocolError{"malformed handshake"}
	}
	lo := binary.LittleEndian.Uint16(b[pos:])
	binary.LittleEndian.PutUint16(b[pos:], lo&^uint16(clearedCapabilities&0xFFFF))
	if len(b) >= pos+7 {
		hi := binary.LittleEndian.Uint16(b[pos+5:])
		binary.LittleEndian.PutUint16(b[pos+5:], hi&^uint16(clearedCapabilities>>16))
		s.deprecateEOF = hi&uint16(capDeprecateEOF>>16) != 0
	}
	if len(b) >= pos+18 {
		// MariaDB's extended capabilities (metadata caching, bulk
		// operations, progress reports) change the packet layout: offer none.
		copy(b[pos+14:pos+18], []byte{0, 0, 0, 0})
	}
	if l := s.cfg.Target.Login; l != nil {
		scramble, plugin := greetingAuth(b, pos)
		capLo := uint32(lo)
		var capHi uint32
		if len(b) >= pos+7 {
			capHi = uint32(binary.LittleEndian.Uint16(b[pos+5:]))
		}
		if c := capLo | capHi<<16; c&capPluginAuth == 0 || c&capSecureConn == 0 {
			return &ProtocolError{"the database does not support pluggable authentication, which sluice's login needs"}
		}
		s.login = &brokeredLogin{login: l, scramble: scramble, plugin: plugin}
		if plugin != pluginNative && plugin != pluginCachingSHA2 {
			// Answer with native_password: a server whose user needs another
			// plugin asks for it with an auth switch.
			s.login.plugin = pluginNative
		}
	}
	out.ToClient, _ = appendPacket(out.ToClient, b, p.seq)
	s.phase = phaseHandshake
	return nil
}

func (s *Session) eofLike(b []byte) bool {
	return len(b) > 0 && b[0] == 0xFE && len(b) < 0xFFFFFF && (s.deprecateEOF && s.caps&capDeprecateEOF != 0 || len(b) < 9)
}

// statusOf reads the server status flags of an OK or EOF packet.
func (s *Session) statusOf(b []byte) uint16 {
	if len(b) == 0 {
		return 0
	}
	if b[0] == 0xFE && len(b) < 9 { // classic EOF: warnings(2) status(2)
		if len(b) >= 5 {
			return binary.LittleEndian.Uint16(b[3:])
		}
		return 0
	}
	r := b[1:]
	for range 2 { // affected rows, last insert id
		_, n, _, ok := lenenc(r)
		if !ok {
			return 0
		}
		r = r[n:]
	}
	if len(r) < 2 {
		return 0
	}
	return binary.LittleEndian.Uint16(r)
}

func (s *Session) responsePacket(p phys, out *session.Output) error {
	r := &s.resp
	if r.kind == respResult && r.state == stRows && !r.cut && !p.cont && !r.inRow && s.limitRows(p, out) {
		r.cut = true
	}
	if r.kind == respResult && !r.cut && !p.cont && len(p.payload) > 0 {
		switch {
		case p.payload[0] == 0xFF && len(p.payload) >= 3 && r.dec.Protected:
			// The server's message may quote a masked value.
			code := binary.LittleEndian.Uint16(p.payload[1:])
			state := "HY000"
			if len(p.payload) >= 9 && p.payload[3] == '#' {
				state = string(p.payload[4:9])
			}
			msg := fmt.Sprintf("sluice: the statement failed (error %d); the server's message is withheld, since the statement reads masked values it may quote", code)
			q := p
			q.payload = errPayload(code, state, msg)
			q.raw, _ = appendPacket(nil, q.payload, p.seq)
			p = q
		case r.state == stStart && s.misplacedColumns(p, out):
			r.cut = true
			var drop session.Output
			return s.relay(p, &drop)
		}
	}
	if r.cut {
		// The client saw the cut's error: the rest of the answer is
		// followed, and dropped.
		var drop session.Output
		return s.relay(p, &drop)
	}
	return s.relay(p, out)
}

// relay passes the answer to the command in flight to the client, masking
// rows as planned.
func (s *Session) relay(p phys, out *session.Output) error {
	r := &s.resp
	switch r.kind {
	case respSingle:
		out.ToClient = append(out.ToClient, p.raw...)
		if !p.more {
			s.single(p)
		}
		return nil
	case respPrepare:
		out.ToClient = append(out.ToClient, p.raw...)
		if p.cont || p.more {
			return nil
		}
		return s.prepareAnswer(p.payload)
	}
	if r.state == stRows && (p.cont || r.inRow) || (r.state == stRows && len(r.plan) == 0 && !s.detect) {
		// Rows with nothing to mask, and pieces of large rows, pass as is.
		if !p.cont && s.eofLike(p.payload) || !p.cont && len(p.payload) > 0 && p.payload[0] == 0xFF {
			return s.endOfRows(p, out)
		}
		r.inRow = p.more
		out.ToClient = append(out.ToClient, p.raw...)
		return nil
	}
	if r.state != stRows {
		if p.cont || p.more {
			out.ToClient = append(out.ToClient, p.raw...)
			return nil
		}
		out.ToClient = append(out.ToClient, p.raw...)
		return s.resultHeader(p.payload)
	}
	// A row to mask: join it, rewrite it, and send it in the same number of
	// sequence ids when it fits, so client and server stay in step.
	if !p.cont && (s.eofLike(p.payload) || len(p.payload) > 0 && p.payload[0] == 0xFF) {
		return s.endOfRows(p, out)
	}
	done, err := s.row.add(p)
	if err != nil {
		return &ProtocolError{err.Error()}
	}
	if !done {
		return nil
	}
	row, err := s.maskRow(s.row.payload)
	if err != nil {
		return err
	}
	if s.row.npkts > 1 || len(row) >= maxPayload {
		return &ProtocolError{"masking a row of 16 MB or more is not supported"}
	}
	out.ToClient, _ = appendPacket(out.ToClient, row, s.row.seq)
	return nil
}

func (s *Session) endOfRows(p phys, out *session.Output) error {
	out.ToClient = append(out.ToClient, p.raw...)
	r := &s.resp
	if p.payload[0] == 0xFF {
		r.state = stDone
		return nil
	}
	status := s.statusOf(p.payload)
	switch {
	case r.fetch != nil:
		r.fetch.rows = r.rows
		if status&serverLastRowSent != 0 || status&serverCursorExists == 0 {
			delete(s.cursors, r.stmtID)
		}
		r.state = stDone
		return nil
	case r.cursor && status&serverCursorExists != 0:
		s.openCursor()
		r.state = stDone
		return nil
	}
	s.statementDone()
	if status&serverMoreResults != 0 {
		r.state, r.stmt, r.plan = stStart, r.stmt+1, nil
		return nil
	}
	r.state = stDone
	return nil
}

// openCursor records the cursor an execute opened: its rows come with
// COM_STMT_FETCH, masked as the execute's would have been.
func (s *Session) openCursor() {
	r := &s.resp
	s.cursors[r.stmtID] = &cursor{sql: r.sql, dec: r.dec, cols: slices.Clone(r.cols), plan: maps.Clone(r.plan)}
}

// statementDone applies what the statement now answered (successfully)
// changed: the default database, the sql_mode.
func (s *Session) statementDone() {
	r := &s.resp
	if r.stmt >= len(r.dec.Effects) {
		return
	}
	for _, e := range r.dec.Effects[r.stmt] {
		switch e.Kind {
		case policy.EffectUse:
			s.cfg.Authorizer.SetDatabase(e.Name)
		case policy.EffectSQLMode:
			if m, err := policy.ParseSQLMode(e.Value); err == nil {
				s.cfg.Authorizer.SetSQLMode(m)
			}
		case policy.EffectCreateRel, policy.EffectDropRel, policy.EffectFeedRel, policy.EffectUncertainRel:
			// MySQL's temporary tables: their DDL is not transactional,
			// so the server's OK is final. Other DDL commits at once, and
			// the catalog, read again, shows it.
			if e.Kind == policy.EffectCreateRel && (e.Relation == nil || !e.Relation.Temporary) {
				continue
			}
			s.applyRelationEffect(e)
		}
	}
}

// single takes the one-packet answer of a simple command.
func (s *Session) single(p phys) {
	r := &s.resp
	r.state = stDone
	if len(p.payload) == 0 || p.payload[0] != 0x00 {
		return // ERR (or COM_STATISTICS' text)
	}
	switch {
	case r.resetStmt:
		delete(s.cursors, r.stmtID)
	case r.resetConn:
		// Every session variable is back at its global value and every
		// prepared statement and temporary table gone: start over from
		// what the server says.
		clear(s.stmts)
		clear(s.cursors)
		s.applyRelationEffect(policy.Effect{Kind: policy.EffectDiscardTemp})
		s.hasLastStmt = false
		s.resetPending = true
	}
}

// prepareAnswer follows PREPARE_OK and the definitions after it; the
// statement id is known only once the server has answered.
func (s *Session) prepareAnswer(b []byte) error {
	r := &s.resp
	eofs := !s.deprecateEOF || s.caps&capDeprecateEOF == 0
	next := func(params bool) {
		switch {
		case params && r.prepCols > 0:
			r.state, r.left = stPrepCols, r.prepCols
		default:
			r.state = stDone
			s.stmts[r.stmtID] = prepared{sql: r.sql, env: r.env}
			s.lastStmt, s.hasLastStmt = r.stmtID, true
		}
	}
	switch r.state {
	case stStart:
		if len(b) > 0 && b[0] == 0xFF {
			r.state = stDone
			s.hasLastStmt = false // a failed prepare leaves no "last" one
			return nil
		}
		if len(b) < 9 || b[0] != 0x00 {
			return &ProtocolError{"malformed PREPARE_OK"}
		}
		r.stmtID = binary.LittleEndian.Uint32(b[1:])
		r.prepCols = int(binary.LittleEndian.Uint16(b[5:]))
		if params := int(binary.LittleEndian.Uint16(b[7:])); params > 0 {
			r.state, r.left = stPrepParams, params
			return nil
		}
		next(true)
	case stPrepParams:
		if r.left--; r.left == 0 {
			if eofs {
				r.state = stPrepParamsEOF
				return nil
			}
			next(true)
		}
	case stPrepParamsEOF:
		next(true)
	case stPrepCols:
		if r.left--; r.left == 0 {
			if eofs {
				r.state = stPrepColsEOF
				return nil
			}
			next(false)
		}
	case stPrepColsEOF:
		next(false)
	}
	return nil
}

// resultHeader follows OK/ERR/column count and column definitions.
func (s *Session) resultHeader(b []byte) error {
	r := &s.resp
	switch r.state {
	case stStart:
		if len(b) == 0 {
			return &ProtocolError{"empty result packet"}
		}
		switch b[0] {
		case 0x00, 0xFE:
			s.statementDone()
			if s.statusOf(b)&serverMoreResults != 0 {
				r.stmt++
			} else {
				r.state = stDone
			}
			return nil
		case 0xFF:
			r.state = stDone
			return nil
		case 0xFB:
			// The server asks for a client file: never through the gateway.
			return &ProtocolError{"LOCAL INFILE is refused"}
		}
		n, _, _, ok := lenenc(b)
		if !ok {
			return &ProtocolError{"malformed column count"}
		}
		r.cols, r.left, r.state = r.cols[:0], int(n), stColumns
		r.plan = map[int]*mask.Rule{}
		if r.stmt < len(r.dec.Masked) {
			for _, m := range r.dec.Masked[r.stmt] {
				r.plan[m.Index] = m.Rule()
			}
		}
	case stColumns:
		r.cols = append(r.cols, columnDef(b))
		if r.left--; r.left == 0 {
			r.state = stRows
			if !s.deprecateEOF || s.caps&capDeprecateEOF == 0 {
				r.state = stColEOF
			}
		}
	case stColEOF:
		r.state = stRows
		if r.cursor && s.statusOf(b)&serverCursorExists != 0 {
			// The execute opened a cursor: no rows follow here.
			s.openCursor()
			r.state = stDone
		}
	}
	return nil
}

// columnDef reads the type and character set of a column definition.
func columnDef(b []byte) column {
	r := b
	for range 6 { // catalog, schema, table, org_table, name, org_name
		n, k, _, ok := lenenc(r)
		if !ok || uint64(len(r)) < uint64(k)+n {
			return column{}
		}
		r = r[k+int(n):]
	}
	if len(r) < 10 {
		return column{}
	}
	// length of fixed fields (0x0c), charset(2), column length(4), type(1)
	return column{charset: binary.LittleEndian.Uint16(r[1:]), typ: r[7]}
}

// maskRow rewrites one text or binary result row.
func (s *Session) maskRow(b []byte) ([]byte, error) {
	r := &s.resp
	if r.binary {
		return s.maskBinaryRow(b)
	}
	out := make([]byte, 0, len(b))
	pos := 0
	for i := range r.cols {
		n, k, null, ok := lenenc(b[pos:])
		if !ok || (!null && uint64(len(b)-pos-k) < n) {
			return nil, &ProtocolError{"malformed row"}
		}
		if null {
			out = append(out, 0xFB)
			pos += k
			continue
		}
		v := b[pos+k : pos+k+int(n)]
		pos += k + int(n)
		nv, isNull := s.maskValue(i, v)
		if isNull {
			out = append(out, 0xFB)
			continue
		}
		out = appendLenenc(out, uint64(len(nv)))
		out = append(out, nv...)
	}
	return out, nil
}

// maskValue masks value v of column i, a string in text results and a
// length-prefixed value in binary ones; it reports NULL.
func (s *Session) maskValue(i int, v []byte) ([]byte, bool) {
	r := &s.resp
	col := column{}
	if i < len(r.cols) {
		col = r.cols[i]
	}
	if m, ok := r.plan[i]; ok {
		s.stats[m.Name]++
		// JSON: a JSON column, or text the analysis saw JSON built into.
		isJSON := col.typ == typeJSON || col.text() && m.Shape != mask.Scalar
		switch {
		case isJSON && m.Structured():
			out, _, _ := s.cfg.Masker.JSON(nil, m, v, s.detect)
			return out, false
		case isJSON && m.Strategy == mask.Null:
			return nil, true
		case isJSON:
			// A JSON value whose parts sluice cannot tell: a JSON string.
			return s.cfg.Masker.JSONWhole(nil, m), false
		case col.text():
			nv, ok := s.cfg.Masker.Text(m.Strategy, m.N, v)
			return nv, !ok
		}
		if k := col.kind(); k != mask.KindOther {
			nv, ok := s.cfg.Masker.TypedText(m.Typed, k, v)
			return nv, !ok
		}
		return nil, true
	}
	if s.detect && (col.text() || col.typ == typeJSON) {
		if col.typ == typeJSON || looksJSON(v) {
			if out, n, ok := s.cfg.Masker.JSON(nil, nil, v, true); ok {
				s.stats["detector"] += n
				return out, false
			}
		}
		nv, n := mask.Scrub(v)
		s.stats["detector"] += n
		return nv, false
	}
	return v, false
}

// looksJSON reports a text value that is a JSON object or array: the
// detectors scan its strings, so that it stays valid.
func looksJSON(v []byte) bool {
	t := bytes.TrimSpace(v)
	return len(t) >= 2 && (t[0] == '{' && t[len(t)-1] == '}' || t[0] == '[' && t[len(t)-1] == ']') && json.Valid(t)
}

// typeJSON is MySQL's JSON column type (MariaDB reports JSON as text).
const typeJSON = 245

// kind is the typed-mask kind of a column type.
func (c column) kind() mask.Kind {
	switch c.typ {
	case 1, 2, 3, 8, 9, 13: // TINY, SHORT, LONG, LONGLONG, INT24, YEAR
		return mask.KindInt
	case 4, 5: // FLOAT, DOUBLE
		return mask.KindFloat
	case 0, 246: // DECIMAL, NEWDECIMAL
		return mask.KindDecimal
	case 10, 14: // DATE, NEWDATE
		return mask.KindDate
	case 7, 12: // TIMESTAMP, DATETIME
		return mask.KindTimestamp
	}
	return mask.KindOther
}

// typedBinary masks a binary-protocol number or date by the typed mask;
// nil means NULL.
func (s *Session) typedBinary(t mask.Typed, c column, enc []byte) []byte {
	m := s.cfg.Masker
	switch c.kind() {
	case mask.KindInt:
		return m.IntBytes(t, enc, binary.LittleEndian)
	case mask.KindFloat:
		return m.FloatBytes(t, enc, binary.LittleEndian)
	case mask.KindDate, mask.KindTimestamp:
		// A length byte, then year (2), month, day, [hour, minute,
		// second, [microseconds (4)]].
		if len(enc) < 5 || int(enc[0]) != len(enc)-1 {
			return nil
		}
		tm := time.Date(int(binary.LittleEndian.Uint16(enc[1:])), time.Month(enc[3]), int(enc[4]), 0, 0, 0, 0, time.UTC)
		out, ok := m.Time(t, tm)
		if !ok {
			return nil
		}
		b := []byte{4, 0, 0, byte(out.Month()), byte(out.Day())}
		binary.LittleEndian.PutUint16(b[1:], uint16(out.Year()))
		return b
	}
	return nil
}

// fixedSize is the size of a binary-protocol value of a fixed-size type,
// or -1 for length-prefixed ones.
func fixedSize(typ byte) int {
	switch typ {
	case 1: // TINY
		return 1
	case 2, 13: // SHORT, YEAR
		return 2
	case 3, 9, 4: // LONG, INT24, FLOAT
		return 4
	case 8, 5: // LONGLONG, DOUBLE
		return 8
	case 6: // NULL
		return 0
	case 7, 10, 11, 12: // TIMESTAMP, DATE, TIME, DATETIME: one length byte
		return -2
	}
	return -1
}

func (s *Session) maskBinaryRow(b []byte) ([]byte, error) {
	r := &s.resp
	nb := (len(r.cols) + 7 + 2) / 8
	if len(b) < 1+nb || b[0] != 0x00 {
		return nil, &ProtocolError{"malformed binary row"}
	}
	bitmap := append([]byte(nil), b[1:1+nb]...)
	pos := 1 + nb
	var vals []byte
	for i, c := range r.cols {
		bit := i + 2
		if bitmap[bit/8]&(1<<(bit%8)) != 0 {
			continue
		}
		var v, enc []byte
		switch sz := fixedSize(c.typ); {
		case sz >= 0:
			if len(b) < pos+sz {
				return nil, &ProtocolError{"malformed binary row"}
			}
			enc = b[pos : pos+sz]
			pos += sz
		case sz == -2:
			if len(b) < pos+1 || len(b) < pos+1+int(b[pos]) {
				return nil, &ProtocolError{"malformed binary row"}
			}
			enc = b[pos : pos+1+int(b[pos])]
			pos += len(enc)
		default:
			n, k, _, ok := lenenc(b[pos:])
			if !ok || uint64(len(b)-pos-k) < n {
				return nil, &ProtocolError{"malformed binary row"}
			}
			enc = b[pos : pos+k+int(n)]
			v = b[pos+k : pos+k+int(n)]
			pos += k + int(n)
		}
		m, masked := r.plan[i]
		if !masked && !(s.detect && (c.text() || c.typ == typeJSON)) {
			vals = append(vals, enc...)
			continue
		}
		if v == nil && masked {
			s.stats[m.Name]++
			if nv := s.typedBinary(m.Typed, c, enc); nv != nil {
				vals = append(vals, nv...)
				continue
			}
			bitmap[bit/8] |= 1 << (bit % 8) // a masked number or date becomes NULL
			continue
		}
		nv, null := s.maskValue(i, v)
		if null {
			bitmap[bit/8] |= 1 << (bit % 8)
			continue
		}
		vals = appendLenenc(vals, uint64(len(nv)))
		vals = append(vals, nv...)
	}
	out := append([]byte{0x00}, bitmap...)
	return append(out, vals...), nil
}

// versionID reads a server version as the number executable comments
// compare with: "8.0.36" is 80036; MariaDB's "5.5.5-10.11.19-MariaDB…"
// (its replication-compatible prefix) is 101119. 0 when unreadable.
func versionID(v string) int {
	v = strings.TrimPrefix(v, "5.5.5-")
	var parts [3]int
	n := 0
	for i := 0; i < len(v) && n < 3; i++ {
		switch c := v[i]; {
		case c >= '0' && c <= '9':
			parts[n] = parts[n]*10 + int(c-'0')
		case c == '.':
			n++
		default:
			i = len(v)
		}
	}
	if n < 2 {
		return 0
	}
	return parts[0]*10000 + parts[1]*100 + parts[2]
}

// misplacedColumns cuts a masked result whose column count is not the one
// the analysis placed its masks in: masking by index could let the real
// value through. The client gets ERR in the column count's place.
func (s *Session) misplacedColumns(p phys, out *session.Output) bool {
	r := &s.resp
	b := p.payload
	if b[0] == 0x00 || b[0] == 0xFE || b[0] == 0xFF || b[0] == 0xFB || r.stmt >= len(r.dec.Masked) || len(r.dec.Masked[r.stmt]) == 0 || r.dec.Widths[r.stmt] < 0 {
		return false
	}
	n, _, _, ok := lenenc(b)
	if !ok || int(n) == r.dec.Widths[r.stmt] {
		return false
	}
	msg := fmt.Sprintf("sluice: the result has %d columns where sluice's analysis has %d, so its masks cannot be placed: refused (name the columns instead of *)", n, r.dec.Widths[r.stmt])
	out.ToClient, _ = appendPacket(out.ToClient, errPayload(1142, "42000", msg), p.seq)
	if r.rec != nil {
		r.rec.Error, r.rec.Code = "1142: "+msg, "1142"
	}
	return true
}

// applyRelationEffect hands a confirmed effect on the session's relations
// to an authorizer that follows them.
func (s *Session) applyRelationEffect(e policy.Effect) {
	if f, ok := s.cfg.Authorizer.(interface{ ApplyEffect(policy.Effect) }); ok {
		f.ApplyEffect(e)
	}
}
