package mongo

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"

	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/mask"
	"github.com/sluicedb/sluice/policy"
)

// Decider decides one command, reading views through their definitions
// (policy.Authorizer does).
type Decider interface {
	AuthorizeMongoIn(views policy.MongoViews, db string, cmd bsoncore.Document, seqs map[string][]bsoncore.Document, text string) policy.Decision
}

// Config is what a session needs besides the bytes.
type Config struct {
	Target  session.Target
	Decider Decider
	Logger  *slog.Logger
	Masker  *mask.Masker
	// Approvals holds commands whose outcome is "approval" for a human;
	// nil refuses them.
	Approvals session.Approvals
	// Observer receives a record per command (audit); may be nil.
	Observer session.Observer
	// Cursors are shared by the sessions of one sluice serve: a driver may
	// continue a cursor on another of its connections. Nil: this session's
	// own. Owner names this session's agent in it (see Cursors).
	Cursors *Cursors
	Owner   string
	// nonce replaces the login's random SCRAM nonce in replay tests.
	nonce func() string
}

// Session follows one MongoDB connection: every command is decided before
// it reaches the server, a refused one is answered in its place (code 13)
// and the connection goes on; replies are matched to their requests and
// their documents masked by the command's plan.
type Session struct {
	cfg            Config
	log            *slog.Logger
	client, server Framer
	// pending are the requests the server owes a reply, by requestID.
	pending map[int32]*request
	// cursors are the cursors the agent opened: getMore and killCursors
	// may name no other, and a getMore continues its cursor's plan.
	cursors *Cursors
	nextID  int32 // requestIDs of sluice's own messages

	// login is sluice's own SCRAM conversation with the server, when the
	// target has a login; loggedIn once the server accepted it. Client
	// messages wait in backlog until then.
	login    *scramLogin
	loggedIn bool
	// held is the command waiting for a human; later client messages wait
	// in backlog until it is decided.
	held    *heldCmd
	backlog [][]byte
	admit   string // a command a human approved: its next decision counts as allowed
	closed  bool
	// colls are the collections whose kind (view or not) the server told
	// sluice, when; lookups counts sluice's listCollections in flight
	// (client messages wait until they are answered).
	colls   map[string]collInfo
	lookups int
	stats   map[string]int
	records bool // the observer keeps the documents the client received
	rounds  int  // lookups for the command being decided
}

// request is what a reply to a forwarded request needs.
type request struct {
	hello bool // rewrite the topology out of the reply
	own   bool // sluice's own (login, killCursors): the reply is not the client's
	// cursor: the reply may open a cursor (find, aggregate, …) on ns.
	cursor bool
	ns     string
	more   int64   // getMore: the cursor it continues
	lookup *lookup // sluice's own listCollections
	plan   *plan   // masks and guardrails of the documents returned
	rec    *session.StatementRecord
	cur    *cursor // getMore: the cursor's state
	// rewritten: sluice changed the command's body (a killCursors cut
	// down to the agent's ids); it is encoded anew, not passed as sent.
	rewritten bool
}

// cursor is a cursor this session opened and the plan of its command.
type cursor struct {
	ns   string
	plan *plan
	text string
	dec  policy.Decision
}

// NewSession starts a session.
func NewSession(cfg Config) *Session {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Masker == nil {
		cfg.Masker = mask.New(nil)
	}
	if cfg.Cursors == nil {
		cfg.Cursors = NewCursors()
	}
	if cfg.Target.Login != nil {
		// The server ties a cursor to the user that opened it.
		cfg.Owner += "\x00login=" + cfg.Target.Login.User
	}
	return &Session{
		cfg: cfg, log: cfg.Logger, pending: map[int32]*request{}, cursors: cfg.Cursors, nextID: 1 << 30,
		loggedIn: cfg.Target.Login == nil, stats: map[string]int{}, colls: map[string]collInfo{},
		records: cfg.Observer != nil && cfg.Observer.RecordsResults(),
	}
}

var (
	_ session.Session      = (*Session)(nil)
	_ session.Resumer      = (*Session)(nil)
	_ session.Expirer      = (*Session)(nil)
	_ interface{ Close() } = (*Session)(nil)
)

// FromClient decides each whole command the client sent.
func (s *Session) FromClient(data []byte, out *session.Output) error {
	if s.closed {
		return nil
	}
	return s.fail(s.client.Feed(data, func(m Message) error { return s.clientMessage(m, out) }), out)
}

// FromServer passes replies on, following cursors, masking documents and
// rewriting hello.
func (s *Session) FromServer(data []byte, out *session.Output) error {
	if s.closed {
		return nil
	}
	return s.fail(s.server.Feed(data, func(m Message) error { return s.serverMessage(m, out) }), out)
}

// hangUp is a message header no server accepts (a length of 0, below the
// header's own): the server closes the connection, and the client's with
// it. MongoDB has no message that ends a connection.
var hangUp = make([]byte, headerLen)

// fail ends the session after a protocol error: the client's pending
// requests get the reason, the server a hang-up.
func (s *Session) fail(err error, out *session.Output) error {
	if err == nil || s.closed {
		return err
	}
	s.log.Warn("mongodb session ended", "err", err)
	s.end("sluice: "+err.Error(), out)
	return err
}

// end answers every request the client still waits on with reason and
// hangs up.
func (s *Session) end(reason string, out *session.Output) {
	for id, r := range s.pending {
		if !r.own {
			s.nextID++
			out.ToClient = AppendMsg(out.ToClient, s.nextID, id, Msg{Body: ErrorDoc(Unauthorized, "Unauthorized", reason)})
		}
	}
	for _, raw := range s.backlog {
		if m, err := messageOf(raw); err == nil {
			s.refuseMsg(m, reason, out)
		}
	}
	s.backlog, s.held, s.pending = nil, nil, map[int32]*request{}
	out.ToServer = append(out.ToServer, hangUp...)
	s.closed = true
}

// Expire ends the session when the agent's token expires.
func (s *Session) Expire(reason string, out *session.Output) {
	if !s.closed {
		s.end("sluice: "+reason, out)
	}
}

// Close reports the session's masking counts.
func (s *Session) Close() {
	if len(s.stats) > 0 {
		s.log.Info("values masked", "counts", fmt.Sprint(s.stats))
	}
}

// handshake are the commands a legacy OP_QUERY may carry.
var handshake = map[string]bool{"hello": true, "isMaster": true, "ismaster": true}

// blocked: client messages wait — sluice's login, or a command held for a
// human.
func (s *Session) blocked() bool { return !s.loggedIn || s.held != nil || s.lookups > 0 }

func (s *Session) clientMessage(m Message, out *session.Output) error {
	if s.blocked() {
		if s.login == nil && !s.loggedIn {
			if err := s.startLogin(out); err != nil {
				return err
			}
		}
		s.backlog = append(s.backlog, append([]byte(nil), m.Raw...))
		return nil
	}
	if r, dup := s.pending[m.RequestID]; dup && !r.own {
		// Two requests with one id: their replies could not be told apart
		// (a hello's reply taken for a find's, unrewritten).
		return protoErr("request id %d reused while its reply is pending", m.RequestID)
	} else if dup {
		s.refuseMsg(m, "sluice: request id in use by sluice", out)
		return nil
	}
	switch m.OpCode {
	case wiremessage.OpMsg:
		return s.command(m, out)
	case wiremessage.OpQuery:
		q, err := ParseQuery(m)
		if err != nil {
			return err
		}
		name := ""
		if e, err := q.Query.IndexErr(0); err == nil {
			name = e.Key()
		}
		if !handshake[name] || !isCmdNamespace(q.Collection) {
			s.refuseMsg(m, fmt.Sprintf("sluice: legacy OP_QUERY %q on %s is not supported: use a driver that speaks OP_MSG", name, q.Collection), out)
			return nil
		}
		body, _ := StripCompression(q.Query)
		body = s.stripAuth(body)
		out.ToServer = appendQuery(out.ToServer, m.RequestID, q, body)
		s.pending[m.RequestID] = &request{hello: true}
		return nil
	case wiremessage.OpCompressed:
		return protoErr("OP_COMPRESSED was never negotiated (sluice strips compression from hello)")
	}
	return protoErr("opcode %v is not supported", m.OpCode)
}

// stripAuth removes a client's speculativeAuthenticate (and the
// mechanism negotiation) from hello when sluice brokers the login: the
// connection is already authenticated as the target's login.
func (s *Session) stripAuth(body bsoncore.Document) bsoncore.Document {
	if s.cfg.Target.Login == nil {
		return body
	}
	out, _ := removeKeys(body, "speculativeAuthenticate", "saslSupportedMechs")
	return out
}

func isCmdNamespace(ns string) bool {
	return len(ns) > 5 && ns[len(ns)-5:] == ".$cmd"
}

func appendQuery(dst []byte, requestID int32, q Query, body bsoncore.Document) []byte {
	start := len(dst)
	idx, dst := wiremessage.AppendHeaderStart(dst, requestID, 0, wiremessage.OpQuery)
	dst = wiremessage.AppendQueryFlags(dst, q.Flags)
	dst = wiremessage.AppendQueryFullCollectionName(dst, q.Collection)
	dst = wiremessage.AppendQueryNumberToSkip(dst, q.Skip)
	dst = wiremessage.AppendQueryNumberToReturn(dst, q.N)
	dst = append(dst, body...)
	if q.Selector != nil {
		dst = append(dst, q.Selector...)
	}
	return bsoncore.UpdateLength(dst, idx, int32(len(dst[start:])))
}

// cursorCommands open cursors (their replies hold cursor.id).
var cursorCommands = map[string]bool{"find": true, "aggregate": true, "listCollections": true, "listIndexes": true}

// authCommands authenticate the connection: with a brokered login, the
// client may not switch it to another user.
var authCommands = map[string]bool{"saslStart": true, "saslContinue": true, "authenticate": true, "logout": true}

func (s *Session) command(m Message, out *session.Output) error {
	msg, err := ParseMsg(m)
	if err != nil {
		return err
	}
	name := msg.Command()
	oneWay := msg.Flags&wiremessage.MoreToCome != 0
	db, _ := msg.Body.Lookup("$db").StringValueOK()
	req := &request{cursor: cursorCommands[name]}
	refusal := ""
	var dec policy.Decision
	text := ""
	switch {
	case db == "":
		refusal = "sluice: a command without $db"
	case s.cfg.Target.Database != "" && db != s.cfg.Target.Database && db != "admin":
		refusal = fmt.Sprintf("sluice: target %q allows database %q only", s.cfg.Target.Name, s.cfg.Target.Database)
	case s.cfg.Target.Login != nil && authCommands[name]:
		refusal = "sluice: sluice logs in for this target; the client may not authenticate as another user"
	case name == "getMore":
		id, ok := msg.Body.Lookup("getMore").AsInt64OK()
		if !ok {
			refusal = "sluice: getMore without a cursor id"
			break
		}
		c, mine := s.cursors.take(s.cfg.Owner, id)
		if !mine {
			// Never opened by this agent, killed, exhausted or expired: the
			// server's own answer for a cursor it does not have, so drivers
			// react as they would to the server (another agent's cursor
			// looks the same: its existence is not told).
			s.log.Info("getMore answered CursorNotFound: not a cursor of this agent's", "cursor", id)
			if oneWay {
				return protoErr("unacknowledged getMore on cursor %d, which this agent did not open", id)
			}
			s.answer(m, ErrorDoc(CursorNotFound, "CursorNotFound", fmt.Sprintf("cursor id %d not found", id)), out)
			return nil
		}
		if coll, _ := msg.Body.Lookup("collection").StringValueOK(); db+"."+coll != c.ns {
			// The plan is the one of the namespace the cursor was opened
			// on; should the server's id ever name another cursor (a
			// restarted server counting again), this getMore must not read
			// it under that plan. The cursor stays the agent's.
			s.cursors.put(s.cfg.Owner, id, c)
			refusal = fmt.Sprintf("sluice: getMore on %s.%s, but cursor %d belongs to %s", db, coll, id, c.ns)
			break
		}
		req.ns, req.more, req.cur, req.plan = c.ns, id, c, c.plan
		req.rec = s.record(c.text, c.dec)
		return s.forward(m, msg, name, oneWay, req, out)
	case name == "killCursors":
		known, unknown, ok := s.killable(msg.Body)
		if !ok {
			refusal = "sluice: killCursors needs an array of cursor ids"
			break
		}
		if len(known) == 0 {
			if !oneWay {
				// Not the agent's (or already gone): answered as the
				// server answers ids it does not have.
				s.answer(m, killReply(unknown), out)
			}
			return nil
		}
		if len(unknown) > 0 {
			// Only the agent's own reach the server.
			msg.Body, msg.Sequences, req.rewritten = withCursors(msg.Body, known), nil, true
		}
		return s.forward(m, msg, name, oneWay, req, out)
	default:
		seqs := map[string][]bsoncore.Document{}
		for _, sq := range msg.Sequences {
			seqs[sq.Identifier] = append(seqs[sq.Identifier], sq.Docs...)
		}
		text = policy.MongoShape(withSequences(msg.Body, msg.Sequences))
		dec = s.cfg.Decider.AuthorizeMongoIn(s, db, msg.Body, seqs, text)
		if len(dec.Unresolved) > 0 && s.rounds < maxLookupRounds {
			// Learn from the server whether they are views, then decide
			// again with the answer.
			s.rounds++
			s.lookUp(dec.Unresolved, out)
			s.backlog = append([][]byte{append([]byte(nil), m.Raw...)}, s.backlog...)
			return nil
		}
		s.rounds = 0
		if dec.Allowed() && s.cfg.Target.Database != "" {
			for _, tb := range dec.Tables {
				if db, _, _ := strings.Cut(tb, "."); db != s.cfg.Target.Database {
					// $out/$merge into another database, bulkWrite's
					// nsInfo, renameCollection's target.
					dec = policy.Decision{Outcome: policy.Deny, Reason: fmt.Sprintf("target %q allows database %q only, and the command names %s", s.cfg.Target.Name, s.cfg.Target.Database, tb), Kinds: dec.Kinds, Tables: dec.Tables}
					break
				}
			}
		}
		if dec.Shadow {
			s.log.Warn("shadow mode: command would be refused", "command", text, "would_be", dec.WouldBe.String(), "reason", dec.Reason)
		}
		if dec.Outcome == policy.Approval && !oneWay {
			var goOn bool
			dec, goOn = s.approval(dec, text, approvalText(msg.Body, msg.Sequences), m, out)
			if !goOn {
				s.admit = ""
				return nil
			}
		}
		// A human's approval counts for this decision only.
		s.admit = ""
		if !dec.Allowed() {
			refusal = "sluice: " + dec.Reason
			if len(dec.Policies) > 0 {
				refusal += " [policies: " + dec.PolicyList() + "]"
			}
			if dec.Outcome == policy.Approval {
				refusal += " (approval required; no approval service is configured, so it is refused)"
			}
		}
		if coll, ok := msg.Body.Index(0).Value().StringValueOK(); ok {
			req.ns = db + "." + coll
		}
	}
	if refusal != "" {
		if oneWay {
			// No reply is expected: the driver would never see a refusal,
			// and the write would seem done. The connection ends instead.
			return protoErr("refused unacknowledged %s (%s): the connection is ended", name, refusal)
		}
		s.log.Info("command refused", "command", name, "reason", refusal)
		s.refuseMsg(m, refusal, out)
		if r := s.record(text, dec); r != nil {
			r.End, r.Error, r.Code = time.Now(), refusal, "13"
			s.cfg.Observer.Statement(*r)
		}
		return nil
	}
	if ddlCommands[name] {
		clear(s.colls)
	}
	if text != "" {
		req.plan = s.newPlan(name, dec)
		req.rec = s.record(text, dec)
		if req.plan != nil && req.cursor {
			req.plan.text, req.plan.dec = text, dec
		}
	}
	return s.forward(m, msg, name, oneWay, req, out)
}

// forward sends an allowed command on, with the changes sluice makes:
// no compression offered, no exhaust replies, no client authentication
// riding on hello, the statement timeout as maxTimeMS.
func (s *Session) forward(m Message, msg Msg, name string, oneWay bool, req *request, out *session.Output) error {
	changed := req.rewritten
	if handshake[name] {
		var c1 bool
		msg.Body, c1 = StripCompression(msg.Body)
		before := len(msg.Body)
		msg.Body = s.stripAuth(msg.Body)
		changed = changed || c1 || len(msg.Body) != before
		req.hello = true
	}
	if msg.Flags&wiremessage.ExhaustAllowed != 0 {
		// Exhaust replies arrive without requests; sluice reads each
		// reply as the answer to one.
		msg.Flags &^= wiremessage.ExhaustAllowed
		changed = true
	}
	if body, ok := s.timeLimit(name, msg.Body); ok {
		msg.Body, changed = body, true
	}
	if changed {
		out.ToServer = AppendMsg(out.ToServer, m.RequestID, m.ResponseTo, msg)
	} else {
		out.ToServer = append(out.ToServer, m.Raw...)
	}
	if !oneWay {
		s.pending[m.RequestID] = req
	} else if req.rec != nil {
		req.rec.End = time.Now()
		s.cfg.Observer.Statement(*req.rec)
	}
	return nil
}

// refuseMsg answers request m in its place; it never reaches the server.
func (s *Session) refuseMsg(m Message, reason string, out *session.Output) {
	s.nextID++
	out.ToClient, _ = Refusal(out.ToClient, s.nextID, m, reason)
}

// answer replies to the OP_MSG request m with body in the server's place.
func (s *Session) answer(m Message, body bsoncore.Document, out *session.Output) {
	s.nextID++
	out.ToClient = AppendMsg(out.ToClient, s.nextID, m.RequestID, Msg{Body: body})
}

// record starts a command's record, when someone observes them.
func (s *Session) record(text string, d policy.Decision) *session.StatementRecord {
	if s.cfg.Observer == nil || text == "" {
		return nil
	}
	return d.Record(text)
}

// sendOwn sends a command of sluice's own; its reply is not forwarded.
func (s *Session) sendOwn(cmd bsoncore.Document, out *session.Output) *request {
	s.nextID++
	for s.pending[s.nextID] != nil {
		s.nextID++ // a client's request took this id: its reply must stay its own
	}
	out.ToServer = AppendMsg(out.ToServer, s.nextID, 0, Msg{Body: cmd})
	r := &request{own: true}
	s.pending[s.nextID] = r
	return r
}

// startLogin begins sluice's login as the target's stored user, before any
// client command reaches the server.
func (s *Session) startLogin(out *session.Output) error {
	l := s.cfg.Target.Login
	db := "admin"
	if v := s.cfg.Target.Tags["auth_database"]; v != "" {
		db = v
	}
	login, cmd, err := newLogin(db, l.User, l.Password.Reveal(), s.cfg.nonce)
	if err != nil {
		return err
	}
	s.login = login
	s.sendOwn(cmd, out)
	out.Sensitive = true
	return nil
}

// ownReply consumes the reply to one of sluice's own commands.
func (s *Session) ownReply(req *request, m Message, out *session.Output) error {
	msg, err := ParseMsg(m)
	if err != nil {
		return err
	}
	if req.lookup != nil {
		s.learn(req.lookup, msg.Body)
		if s.lookups--; s.lookups == 0 {
			return s.replayBacklog(out)
		}
		return nil
	}
	if s.login == nil || s.loggedIn {
		return nil // a killCursors sluice sent: its answer changes nothing
	}
	next, err := s.login.next(msg.Body)
	if err != nil {
		return err
	}
	if next != nil {
		s.sendOwn(next, out)
		out.Sensitive = true
		return nil
	}
	s.loggedIn, s.login = true, nil
	s.log.Info("brokered login done", "user", s.cfg.Target.Login.User)
	return s.replayBacklog(out)
}

// replayBacklog processes the client messages that waited.
func (s *Session) replayBacklog(out *session.Output) error {
	for len(s.backlog) > 0 && !s.blocked() && !s.closed {
		raw := s.backlog[0]
		s.backlog = s.backlog[1:]
		m, err := messageOf(raw)
		if err != nil {
			return err
		}
		if err := s.clientMessage(m, out); err != nil {
			return err
		}
	}
	if len(s.backlog) == 0 {
		s.backlog = nil
	}
	return nil
}

func (s *Session) serverMessage(m Message, out *session.Output) error {
	req, ok := s.pending[m.ResponseTo]
	if !ok {
		return protoErr("a reply to request %d, which is not pending", m.ResponseTo)
	}
	delete(s.pending, m.ResponseTo)
	if req.own {
		return s.ownReply(req, m, out)
	}
	switch m.OpCode {
	case wiremessage.OpReply:
		flags, docs, err := ParseReply(m)
		if err != nil {
			return err
		}
		if !req.hello || len(docs) != 1 {
			return protoErr("an OP_REPLY to a request that was not the handshake")
		}
		doc, _ := RewriteHello(docs[0])
		out.ToClient = appendReplyFlags(out.ToClient, m.RequestID, m.ResponseTo, flags, doc)
		return nil
	case wiremessage.OpMsg:
	default:
		return protoErr("server sent %v", m.OpCode)
	}
	msg, err := ParseMsg(m)
	if err != nil {
		return err
	}
	if msg.Flags&wiremessage.MoreToCome != 0 {
		return protoErr("the server streamed replies (moreToCome) sluice did not ask for")
	}
	if req.hello {
		var changed bool
		if msg.Body, changed = RewriteHello(msg.Body); changed {
			out.ToClient = AppendMsg(out.ToClient, m.RequestID, m.ResponseTo, msg)
			return nil
		}
	}
	id, ns := int64(0), req.ns
	if c, ok := msg.Body.Lookup("cursor").DocumentOK(); ok && (req.cursor || req.more != 0) {
		id, _ = c.Lookup("id").AsInt64OK()
		if n, ok := c.Lookup("ns").StringValueOK(); ok && req.cur == nil {
			// The namespace the server says the cursor reads
			// (db.$cmd.listCollections, a view's name): its getMores must
			// name it.
			ns = n
		}
	}
	body, cut, err := s.reply(req, msg.Body, id, out)
	if err != nil {
		return err
	}
	if id != 0 && !cut {
		c := req.cur
		if c == nil {
			c = &cursor{ns: ns}
			if req.plan != nil {
				c.plan, c.text, c.dec = req.plan, req.plan.text, req.plan.dec
			}
		}
		if !s.cursors.put(s.cfg.Owner, id, c) {
			s.log.Warn("too many open cursors: this one is not followed (its getMore will be answered CursorNotFound)", "cursor", id)
		}
	}
	if body == nil {
		out.ToClient = append(out.ToClient, m.Raw...)
		return nil
	}
	msg.Body = body
	out.ToClient = AppendMsg(out.ToClient, m.RequestID, m.ResponseTo, msg)
	return nil
}

// appendReplyFlags appends an OP_REPLY holding doc.
func appendReplyFlags(dst []byte, requestID, responseTo int32, flags wiremessage.ReplyFlag, doc bsoncore.Document) []byte {
	start := len(dst)
	idx, dst := wiremessage.AppendHeaderStart(dst, requestID, responseTo, wiremessage.OpReply)
	dst = wiremessage.AppendReplyFlags(dst, flags)
	dst = wiremessage.AppendReplyCursorID(dst, 0)
	dst = wiremessage.AppendReplyStartingFrom(dst, 0)
	dst = wiremessage.AppendReplyNumberReturned(dst, 1)
	dst = append(dst, doc...)
	return bsoncore.UpdateLength(dst, idx, int32(len(dst[start:])))
}

// messageOf frames one whole message held in raw.
func messageOf(raw []byte) (Message, error) {
	var f Framer
	var m Message
	err := f.Feed(raw, func(x Message) error { m = x; return nil })
	if err == nil && m.Raw == nil {
		err = protoErr("a partial message in the backlog")
	}
	return m, err
}

// withSequences is the command with its kind-1 sections as arrays, so its
// text (audit, approvals and their grants) shows every statement: a
// delete's filters ride in the "deletes" sequence.
func withSequences(body bsoncore.Document, seqs []Sequence) bsoncore.Document {
	if len(seqs) == 0 {
		return body
	}
	idx, out := bsoncore.AppendDocumentStart(nil)
	out = append(out, body[4:len(body)-1]...)
	for _, sq := range seqs {
		aidx, o := bsoncore.AppendArrayElementStart(out, sq.Identifier)
		for i, d := range sq.Docs {
			o = bsoncore.AppendDocumentElement(o, strconv.Itoa(i), d)
		}
		out, _ = bsoncore.AppendArrayEnd(o, aidx)
	}
	out, _ = bsoncore.AppendDocumentEnd(out, idx)
	return out
}
