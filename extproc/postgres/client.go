package postgres

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

// readyFrame handles a client message once the session is ready.
func (s *Session) readyFrame(f frame, out *session.Output) error {
	if f.piece {
		out.ToServer = append(out.ToServer, f.raw...) // CopyData
		return nil
	}
	if s.copyIn {
		switch f.typ {
		case 'd':
		case 'c', 'f':
			s.copyIn = false
		default:
			return &ProtocolError{Msg: fmt.Sprintf("message %q during COPY FROM STDIN: only copy data, CopyDone or CopyFail may follow", f.typ)}
		}
		out.ToServer = append(out.ToServer, f.raw...)
		return nil
	}
	switch f.typ {
	case 'Q':
		var m pgproto3.Query
		if err := decode("Query", &m, f.body); err != nil {
			return err
		}
		return s.query(m.String, f, out)
	case 'P':
		var m pgproto3.Parse
		if err := decode("Parse", &m, f.body); err != nil {
			return err
		}
		// Parsing runs nothing, so only SQL that cannot be understood is
		// refused here; policy is enforced at Bind, where execution begins,
		// matching where PostgreSQL reports permission errors. In shadow
		// mode nothing is refused, over either protocol.
		if d := s.authorize(m.Query); d.Unparseable && !d.Shadow {
			s.refuseExtended(d, m.Query, out)
			return nil
		}
		s.push(op{kind: opParse, name: m.Name, prep: &prepared{sql: m.Query}})
	case 'B':
		var m pgproto3.Bind
		if err := decode("Bind", &m, f.body); err != nil {
			return err
		}
		return s.bind(&m, f, out)
	case 'D':
		var m pgproto3.Describe
		if err := decode("Describe", &m, f.body); err != nil {
			return err
		}
		k := opDescribePortal
		if m.ObjectType == 'S' {
			k = opDescribeStatement
		}
		s.push(op{kind: k, name: m.Name})
	case 'E':
		var m pgproto3.Execute
		if err := decode("Execute", &m, f.body); err != nil {
			return err
		}
		return s.execute(m.Portal, f, out)
	case 'C':
		var m pgproto3.Close
		if err := decode("Close", &m, f.body); err != nil {
			return err
		}
		s.push(op{kind: opClose, name: m.Name, close: m.ObjectType})
	case 'S':
		s.push(op{kind: opSync})
	case 'F':
		// The fast-path interface calls any function by OID (lo_import,
		// pg_read_file, …) and bypasses SQL analysis: always refused.
		s.refuseSimple(policy.Decision{Reason: "the fast-path function call interface is not allowed"}, "", out)
		return nil
	case 'H', 'c', 'f', 'd', 'X':
		// Flush, CopyDone, CopyFail, CopyData, Terminate: no answer of their own.
	default:
		return &ProtocolError{Msg: fmt.Sprintf("unexpected client message %q", f.typ)}
	}
	out.ToServer = append(out.ToServer, f.raw...)
	return nil
}

// doomed reports whether the current batch holds a refusal: the server
// fails there and skips every message up to Sync, so those need no
// decision (nor waiting for one).
func (s *Session) doomed() bool { return s.refusedBatch == s.batch+1 }

// query decides a simple Query: its statements, and the cursors its
// FETCHes read.
func (s *Session) query(sql string, f frame, out *session.Output) error {
	if s.doomed() {
		s.push(op{kind: opQuery}) // skipped by the server
		out.ToServer = append(out.ToServer, f.raw...)
		return nil
	}
	d := s.authorize(sql)
	var cursors []*portal
	if d.Allowed() || d.Outcome == policy.Approval {
		var wait bool
		cursors, wait = s.queryCursors(&d)
		if wait {
			s.wait(f)
			return nil
		}
	}
	if d.Outcome == policy.Approval {
		var ok bool
		if d, ok = s.approval(d, sql, f, true, out); !ok {
			return nil
		}
	}
	if !d.Allowed() {
		s.refuseSimple(d, sql, out)
		return nil
	}
	protected := d.Protected
	for _, c := range cursors {
		protected = protected || (c != nil && c.dec != nil && c.dec.Protected)
	}
	s.push(op{kind: opQuery, dec: &d, sql: sql, cursors: cursors, protected: protected, rec: s.record(sql, d)})
	s.copyIn = d.CopyIn
	out.ToServer = append(out.ToServer, f.raw...)
	return nil
}

// queryCursors finds the cursor each FETCH or MOVE of a Query reads,
// following the cursors the Query's own earlier statements declare and
// close. A cursor sluice does not know refuses the Query (d is changed);
// wait reports that earlier batches still decide one.
func (s *Session) queryCursors(d *policy.Decision) (cursors []*portal, wait bool) {
	local := map[string]*portal{}
	closedAll := false
	for i, fx := range d.Effects {
		for _, e := range fx {
			switch e.Kind {
			case policy.EffectDeclare:
				var masked []policy.MaskedColumn
				if i < len(d.Masked) {
					masked = d.Masked[i]
				}
				local[e.Name] = &portal{masked: masked, width: widthOf(d, i)}
			case policy.EffectClose:
				if e.Name == "" {
					closedAll, local = true, map[string]*portal{}
				} else {
					local[e.Name] = nil
				}
			case policy.EffectDiscardAll:
				closedAll, local = true, map[string]*portal{}
			case policy.EffectFetch, policy.EffectMove:
				p, ok := local[e.Name]
				if !ok && !closedAll {
					var l lookup
					p, l = s.portalView(e.Name)
					if l == pending {
						return nil, true
					}
				}
				if p == nil {
					*d = policy.Decision{Outcome: policy.Deny, Reason: fmt.Sprintf("cursor %q is not one sluice saw declared in this session: refused", e.Name), Kinds: d.Kinds, Tables: d.Tables}
					return nil, false
				}
				if cursors == nil {
					cursors = make([]*portal, len(d.Effects))
				}
				cursors[i] = p
			}
		}
	}
	return cursors, false
}

// bind decides a Bind: the statement it binds is decided as the server
// will hold it when it gets there.
func (s *Session) bind(m *pgproto3.Bind, f frame, out *session.Output) error {
	if s.doomed() {
		s.push(op{kind: opBind, name: m.DestinationPortal}) // skipped by the server
		out.ToServer = append(out.ToServer, f.raw...)
		return nil
	}
	p, l := s.stmtView(m.PreparedStatement)
	switch {
	case l == pending:
		s.wait(f)
		return nil
	case l == unknown:
		s.refuseMissing("prepared statement", m.PreparedStatement, out)
		return nil
	case p.sqlLevel:
		s.refuseExtended(policy.Decision{Reason: fmt.Sprintf("prepared statement %q was made by SQL PREPARE, whose text sluice does not follow: bind statements prepared with Parse", m.PreparedStatement)}, "", out)
		return nil
	}
	d := s.authorize(p.sql)
	if d.Outcome == policy.Approval {
		var ok bool
		if d, ok = s.approval(d, p.sql, f, false, out); !ok {
			return nil
		}
	}
	if !d.Allowed() {
		s.refuseExtended(d, p.sql, out)
		return nil
	}
	var masked []policy.MaskedColumn
	if len(d.Masked) > 0 {
		masked = d.Masked[0]
	}
	width := widthOf(&d, 0)
	if len(d.Effects) > 0 {
		// DECLARE, FETCH, CLOSE, PREPARE run through the extended protocol.
		cursors, wait := s.queryCursors(&d)
		if wait {
			s.wait(f)
			return nil
		}
		if !d.Allowed() {
			s.refuseExtended(d, p.sql, out)
			return nil
		}
		if len(cursors) > 0 && cursors[0] != nil {
			// A FETCH: the cursor's rows, masked with the cursor's plan.
			masked, width = cursors[0].masked, cursors[0].width
			d.Protected = d.Protected || (cursors[0].dec != nil && cursors[0].dec.Protected)
		}
	}
	port := &portal{sql: p.sql, dec: &d, masked: masked, width: width, stmt: p, formats: m.ResultFormatCodes, inTx: true}
	s.push(op{kind: opBind, name: m.DestinationPortal, port: port})
	out.ToServer = append(out.ToServer, f.raw...)
	return nil
}

// execute runs a portal with the plan it was bound with.
func (s *Session) execute(name string, f frame, out *session.Output) error {
	if s.doomed() {
		s.push(op{kind: opExecute, name: name, plan: newRowPlan(nil, 0, false)}) // skipped by the server
		out.ToServer = append(out.ToServer, f.raw...)
		return nil
	}
	p, l := s.portalView(name)
	switch l {
	case pending:
		s.wait(f)
		return nil
	case unknown:
		s.refuseMissing("portal", name, out)
		return nil
	}
	plan := newRowPlan(p.masked, p.width, s.detect)
	plan.src = p
	var rec *session.StatementRecord
	if p.dec != nil {
		rec = s.record(p.sql, *p.dec)
	}
	o := op{kind: opExecute, name: name, plan: plan, rec: rec, protected: p.dec != nil && p.dec.Protected}
	if p.stmt != nil {
		// A bound statement's own effects (a DECLARE, a CLOSE) apply once
		// it completes; a cursor's do not repeat when it is fetched from.
		o.dec, o.sql = p.dec, p.sql
		s.copyIn = p.dec.CopyIn
	}
	s.push(o)
	out.ToServer = append(out.ToServer, f.raw...)
	return nil
}

func decode(name string, m interface{ Decode([]byte) error }, body []byte) error {
	if err := m.Decode(body); err != nil {
		return &ProtocolError{Msg: fmt.Sprintf("malformed %s: %v", name, err)}
	}
	return nil
}

// push queues an op in the current batch; a Sync or simple Query ends it.
func (s *Session) push(o op) {
	o.batch = s.batch
	if o.denial != nil {
		s.refusedBatch = s.batch + 1 // kept as a number: no scan per message
	}
	if s.skipping {
		// The server discards it unanswered; a Sync ends the skipping.
		if o.kind == opSync {
			s.skipping = false
		} else {
			o.skipped = true
		}
	}
	s.queue(o)
	if o.kind.endsAtReadyForQuery() {
		s.batch++
	}
}

// refuseSimple answers a refused simple Query (or FunctionCall): the server is
// sent a failing Describe and a Sync, which yield ErrorResponse and
// ReadyForQuery exactly where the query's response would have been, with the
// transaction aborted as a failed statement would leave it.
func (s *Session) refuseSimple(d policy.Decision, sql string, out *session.Output) {
	out.ToServer = s.appendPoison(out.ToServer)
	out.ToServer = append(out.ToServer, 'S', 0, 0, 0, 4)
	s.push(op{kind: opSync, denial: denialError(d), rec: s.record(sql, d)})
	s.logRefusal(d, sql)
}

// refuseExtended answers a refused Parse, Bind or Execute in the extended
// protocol: the failing Describe makes the server report an error there and
// skip every message until Sync, as it would had the statement failed itself.
func (s *Session) refuseExtended(d policy.Decision, sql string, out *session.Output) {
	s.refuseExtendedWith(denialError(d), d, sql, out)
}

func (s *Session) refuseExtendedWith(e *pgproto3.ErrorResponse, d policy.Decision, sql string, out *session.Output) {
	out.ToServer = s.appendPoison(out.ToServer)
	s.push(op{kind: opDescribeStatement, name: s.poisonName, denial: e, rec: s.record(sql, d)})
	s.logRefusal(d, sql)
}

// refuseMissing refuses a message naming a prepared statement or portal
// sluice has no record of. sluice follows the server's confirmations, so
// the server has none either: the client gets the server's own error
// (26000 / 34000), which drivers act on (pgx re-prepares).
func (s *Session) refuseMissing(kind, name string, out *session.Output) {
	e := &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "26000",
		Message: fmt.Sprintf("prepared statement %q does not exist", name)}
	if kind == "portal" {
		e.Code, e.Message = "34000", fmt.Sprintf("portal %q does not exist", name)
	}
	s.refuseExtendedWith(e, policy.Decision{Reason: fmt.Sprintf("%s %q is not one sluice saw created in this session", kind, name)}, "", out)
}

func (s *Session) logRefusal(d policy.Decision, sql string) {
	s.log.Info("statement refused", "sql", sql, "outcome", d.Outcome.String(), "reason", d.Reason, "policies", d.Policies)
}

// authorize decides sql and logs what shadow mode lets through.
func (s *Session) authorize(sql string) policy.Decision {
	d := s.cfg.Authorizer.AuthorizeSQL(sql)
	if d.Shadow {
		s.log.Warn("shadow mode: statement would be refused", "sql", sql, "would_be", d.WouldBe.String(), "reason", d.Reason, "policies", d.Policies)
	}
	return d
}

func (s *Session) appendPoison(dst []byte) []byte {
	m := pgproto3.Describe{ObjectType: 'S', Name: s.poisonName}
	dst, _ = m.Encode(dst)
	return dst
}

func denialError(d policy.Decision) *pgproto3.ErrorResponse {
	e := &pgproto3.ErrorResponse{
		Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "42501",
		Message: "sluice: " + d.Reason,
		Detail:  "policies: " + d.PolicyList(),
	}
	switch {
	case d.Missing != nil && d.Outcome == policy.Deny:
		// As PostgreSQL says it: migration tools and ORMs branch on 42P01.
		e.Code, e.Detail = "42P01", ""
		e.Message = fmt.Sprintf("relation %q does not exist", d.Missing.Qualified())
	case d.Unparseable:
		e.Code = "42601"
		e.Detail = ""
	case d.Outcome == policy.Approval:
		// Held statements wait for a human once approvals are configured;
		// until then they are refused, saying what would let them run.
		e.Message += " (approval required; no approval service is configured, so it is refused)"
	}
	return e
}
