package mongo

import (
	"fmt"
	"log/slog"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"

	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

// Decider decides one command (policy.Authorizer does).
type Decider interface {
	AuthorizeMongo(db string, cmd bsoncore.Document, seqs map[string][]bsoncore.Document, text string) policy.Decision
}

// Config is what a session needs besides the bytes.
type Config struct {
	Decider Decider
	Logger  *slog.Logger
}

// Session follows one MongoDB connection: every command is decided before
// it reaches the server, a refused one is answered in its place (code 13)
// and the connection goes on, and replies are matched to their requests.
//
// It is not yet registered as a protocol: results are not masked, so a
// target with tagged fields would leak them. Until masking lands, sluice
// refuses mongodb targets (config validation).
type Session struct {
	cfg            Config
	log            *slog.Logger
	client, server Framer
	// pending are the requests the server owes a reply, by requestID.
	pending map[int32]request
	// cursors are the cursors this session opened: getMore and killCursors
	// may name no other.
	cursors map[int64]string
	nextID  int32 // requestIDs of sluice's own replies
}

// request is what a reply to a forwarded request needs.
type request struct {
	hello  bool   // rewrite the topology out of the reply
	cursor bool   // the reply may open or end a cursor
	ns     string // the collection, for a cursor it opens
	more   int64  // getMore: the cursor it continues
}

// NewSession starts a session.
func NewSession(cfg Config) *Session {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Session{cfg: cfg, log: cfg.Logger, pending: map[int32]request{}, cursors: map[int64]string{}, nextID: 1 << 30}
}

var _ session.Session = (*Session)(nil)

// FromClient decides each whole command the client sent.
func (s *Session) FromClient(data []byte, out *session.Output) error {
	return s.client.Feed(data, func(m Message) error { return s.clientMessage(m, out) })
}

// FromServer passes replies on, following cursors and rewriting hello.
func (s *Session) FromServer(data []byte, out *session.Output) error {
	return s.server.Feed(data, func(m Message) error { return s.serverMessage(m, out) })
}

// handshake are the commands a legacy OP_QUERY may carry.
var handshake = map[string]bool{"hello": true, "isMaster": true, "ismaster": true}

func (s *Session) clientMessage(m Message, out *session.Output) error {
	if _, dup := s.pending[m.RequestID]; dup {
		// Two requests with one id: their replies could not be told apart
		// (a hello's reply taken for a find's, unrewritten).
		return protoErr("request id %d reused while its reply is pending", m.RequestID)
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
			s.refuse(m, fmt.Sprintf("sluice: legacy OP_QUERY %q on %s is not supported: use a driver that speaks OP_MSG", name, q.Collection), out)
			return nil
		}
		body, _ := StripCompression(q.Query)
		out.ToServer = appendQuery(out.ToServer, m.RequestID, q, body)
		s.pending[m.RequestID] = request{hello: true}
		return nil
	case wiremessage.OpCompressed:
		return protoErr("OP_COMPRESSED was never negotiated (sluice strips compression from hello)")
	}
	return protoErr("opcode %v is not supported", m.OpCode)
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
var cursorCommands = map[string]bool{"find": true, "aggregate": true, "listCollections": true, "listIndexes": true, "getMore": true}

func (s *Session) command(m Message, out *session.Output) error {
	msg, err := ParseMsg(m)
	if err != nil {
		return err
	}
	name := msg.Command()
	oneWay := msg.Flags&wiremessage.MoreToCome != 0
	db, _ := msg.Body.Lookup("$db").StringValueOK()
	req := request{cursor: cursorCommands[name]}
	refusal := ""
	switch {
	case db == "":
		refusal = "sluice: a command without $db"
	case name == "getMore":
		id, ok := msg.Body.Lookup("getMore").AsInt64OK()
		if ns, mine := s.cursors[id]; !ok || !mine {
			refusal = "sluice: getMore on a cursor this session did not open"
		} else {
			req.ns, req.more = ns, id
		}
	case name == "killCursors":
		ids, ok := msg.Body.Lookup("cursors").ArrayOK()
		vals, _ := ids.Values()
		for _, v := range vals {
			id, isInt := v.AsInt64OK()
			if _, mine := s.cursors[id]; !isInt || !mine {
				ok = false
			}
		}
		if !ok {
			refusal = "sluice: killCursors on a cursor this session did not open"
			break
		}
		// Given up by the client whatever the reply says: never reused
		// (a failed kill could leave an id the server later hands out again).
		for _, v := range vals {
			id, _ := v.AsInt64OK()
			delete(s.cursors, id)
		}
	default:
		seqs := map[string][]bsoncore.Document{}
		for _, sq := range msg.Sequences {
			seqs[sq.Identifier] = append(seqs[sq.Identifier], sq.Docs...)
		}
		d := s.cfg.Decider.AuthorizeMongo(db, msg.Body, seqs, policy.MongoShape(msg.Body))
		switch d.Outcome {
		case policy.Allow:
		case policy.Approval:
			refusal = "sluice: " + d.Reason + " (approvals for MongoDB commands are not supported yet)"
		default:
			refusal = "sluice: " + d.Reason
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
		s.refuse(m, refusal, out)
		return nil
	}
	changed := false
	if handshake[name] {
		msg.Body, changed = StripCompression(msg.Body)
		req.hello = true
	}
	if msg.Flags&wiremessage.ExhaustAllowed != 0 {
		// Exhaust replies arrive without requests; sluice reads each
		// reply as the answer to one.
		msg.Flags &^= wiremessage.ExhaustAllowed
		changed = true
	}
	if changed {
		out.ToServer = AppendMsg(out.ToServer, m.RequestID, m.ResponseTo, msg)
	} else {
		out.ToServer = append(out.ToServer, m.Raw...)
	}
	if !oneWay {
		s.pending[m.RequestID] = req
	}
	return nil
}

// refuse answers request m in its place; it never reaches the server.
func (s *Session) refuse(m Message, reason string, out *session.Output) {
	s.nextID++
	out.ToClient, _ = Refusal(out.ToClient, s.nextID, m, reason)
}

func (s *Session) serverMessage(m Message, out *session.Output) error {
	req, ok := s.pending[m.ResponseTo]
	if !ok {
		return protoErr("a reply to request %d, which is not pending", m.ResponseTo)
	}
	delete(s.pending, m.ResponseTo)
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
	if req.more != 0 {
		// The cursor goes on under the same id or is done (0, or an error).
		delete(s.cursors, req.more)
	}
	if req.cursor {
		if c, ok := msg.Body.Lookup("cursor").DocumentOK(); ok {
			if id, ok := c.Lookup("id").AsInt64OK(); ok && id != 0 {
				ns, _ := c.Lookup("ns").StringValueOK()
				if req.ns != "" {
					ns = req.ns
				}
				s.cursors[id] = ns
			}
		}
	}
	out.ToClient = append(out.ToClient, m.Raw...)
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
