package mongo

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

// decider refuses the commands named in deny, and allows the rest.
type decider map[string]string

func (d decider) AuthorizeMongoIn(_ policy.MongoViews, db string, cmd bsoncore.Document, _ map[string][]bsoncore.Document, text string) policy.Decision {
	if reason, ok := d[cmd.Index(0).Key()]; ok && strings.HasPrefix(reason, "approval:") {
		return policy.Decision{Outcome: policy.Approval, Reason: reason}
	} else if ok {
		return policy.Decision{Outcome: policy.Deny, Reason: reason}
	}
	return policy.Decision{Outcome: policy.Allow}
}

func command(id int32, flags wiremessage.MsgFlag, kv ...any) []byte {
	return AppendMsg(nil, id, 0, Msg{Flags: flags, Body: doc(kv...)})
}

func reply(to int32, body bsoncore.Document) []byte {
	return AppendMsg(nil, 1000+to, to, Msg{Body: body})
}

func cursorReply(to int32, id int64) []byte {
	return reply(to, bsoncore.NewDocumentBuilder().
		AppendDocument("cursor", bsoncore.NewDocumentBuilder().AppendInt64("id", id).AppendString("ns", "app.users").
			AppendArray("firstBatch", bsoncore.NewArrayBuilder().Build()).Build()).
		AppendDouble("ok", 1).Build())
}

// replies parses what the session sent the client.
func replies(t *testing.T, b []byte) []Msg {
	t.Helper()
	var f Framer
	var out []Msg
	if err := f.Feed(b, func(m Message) error {
		msg, err := ParseMsg(m)
		out = append(out, msg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSessionRefusesInPlaceAndGoesOn(t *testing.T) {
	s := NewSession(Config{Decider: decider{"delete": "DELETE on table app.users refused by policy no-unbounded-delete"}})
	var out session.Output
	del := command(1, 0, "delete", "users", "$db", "app")
	if err := s.FromClient(del, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.ToServer) != 0 {
		t.Fatal("a refused command reached the server")
	}
	r := replies(t, out.ToClient)
	if len(r) != 1 || r[0].Body.Lookup("code").Int32() != Unauthorized || !strings.Contains(r[0].Body.Lookup("errmsg").StringValue(), "no-unbounded-delete") {
		t.Fatalf("refusal %v", r)
	}
	out.Reset()
	find := command(2, 0, "find", "users", "$db", "app")
	if err := s.FromClient(find, &out); err != nil || !bytes.Equal(out.ToServer, find) || len(out.ToClient) != 0 {
		t.Fatalf("find after a refusal: %v, forwarded %d bytes", err, len(out.ToServer))
	}
	out.Reset()
	if err := s.FromServer(cursorReply(2, 77), &out); err != nil || len(out.ToClient) == 0 {
		t.Fatalf("find's reply: %v", err)
	}
}

// TestSessionCursorsAreTheAgents: getMore and killCursors pass only for
// cursors the agent opened, on any of its connections (drivers continue a
// cursor on whichever pooled connection is free); another agent's, a
// finished or a killed cursor is answered as the server answers a cursor it
// does not have (CursorNotFound; killCursors' cursorsNotFound), and never
// reaches the server.
func TestSessionCursorsAreTheAgents(t *testing.T) {
	shared := NewCursors()
	type conn struct {
		s   *Session
		out session.Output
	}
	open := func(owner string) *conn {
		return &conn{s: NewSession(Config{Decider: decider{}, Cursors: shared, Owner: owner})}
	}
	feed := func(c *conn, client bool, b []byte) {
		t.Helper()
		c.out.Reset()
		var err error
		if client {
			err = c.s.FromClient(b, &c.out)
		} else {
			err = c.s.FromServer(b, &c.out)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	answered := func(c *conn) bsoncore.Document {
		t.Helper()
		if len(c.out.ToServer) != 0 || len(c.out.ToClient) == 0 {
			t.Fatalf("not answered by sluice: to server %d bytes, to client %d", len(c.out.ToServer), len(c.out.ToClient))
		}
		m, err := messageOf(c.out.ToClient)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := ParseMsg(m)
		if err != nil {
			t.Fatal(err)
		}
		return msg.Body
	}
	notFound := func(c *conn) {
		t.Helper()
		if code, _ := answered(c).Lookup("code").AsInt64OK(); code != CursorNotFound {
			t.Fatalf("answer code %d, want %d", code, CursorNotFound)
		}
	}
	passed := func(c *conn) {
		t.Helper()
		if len(c.out.ToServer) == 0 || len(c.out.ToClient) != 0 {
			t.Fatalf("not forwarded: to server %d bytes, to client %d", len(c.out.ToServer), len(c.out.ToClient))
		}
	}
	a1, a2, b := open("agent-a"), open("agent-a"), open("agent-b")
	feed(a1, true, command(1, 0, "find", "users", "$db", "app"))
	feed(a1, false, cursorReply(1, 77))
	feed(a1, true, command(2, 0, "getMore", int64(99), "collection", "users", "$db", "app"))
	notFound(a1)
	feed(b, true, command(2, 0, "getMore", int64(77), "collection", "users", "$db", "app"))
	notFound(b) // another agent on the same login
	// A getMore naming another namespace than the server gave the cursor
	// is refused; the cursor stays the agent's.
	feed(a2, true, command(3, 0, "getMore", int64(77), "collection", "secrets", "$db", "app"))
	if code, _ := answered(a2).Lookup("code").AsInt64OK(); code != Unauthorized {
		t.Fatalf("getMore on another namespace: code %d", code)
	}
	// The same agent's other connection continues it.
	feed(a2, true, command(3, 0, "getMore", int64(77), "collection", "users", "$db", "app"))
	passed(a2)
	// While that getMore is in flight, no connection may use the cursor.
	feed(a1, true, command(4, 0, "getMore", int64(77), "collection", "users", "$db", "app"))
	notFound(a1)
	feed(a2, false, cursorReply(3, 77)) // goes on
	feed(a1, true, command(5, 0, "getMore", int64(77), "collection", "users", "$db", "app"))
	passed(a1)
	feed(a1, false, cursorReply(5, 0)) // exhausted
	feed(a2, true, command(6, 0, "getMore", int64(77), "collection", "users", "$db", "app"))
	notFound(a2)

	// killCursors: another agent's ids are answered not found; of a mix,
	// only the agent's reach the server.
	feed(a1, true, command(7, 0, "find", "users", "$db", "app"))
	feed(a1, false, cursorReply(7, 88))
	feed(b, true, command(8, 0, "killCursors", "users", "cursors", bsoncore.NewArrayBuilder().AppendInt64(88).Build(), "$db", "app"))
	if nf, _ := answered(b).Lookup("cursorsNotFound").ArrayOK(); len(nf) == 0 || nf.Index(0).Int64() != 88 {
		t.Fatalf("killCursors of another agent's cursor: %v", answered(b))
	}
	feed(a2, true, command(9, 0, "killCursors", "users", "cursors", bsoncore.NewArrayBuilder().AppendInt64(12345).AppendInt64(88).Build(), "$db", "app"))
	passed(a2)
	m, _ := messageOf(a2.out.ToServer)
	sent, _ := ParseMsg(m)
	if ids, _ := sent.Body.Lookup("cursors").ArrayOK(); len(mustValues(t, ids)) != 1 || ids.Index(0).Int64() != 88 {
		t.Fatalf("killCursors sent to the server: %v", sent.Body)
	}
	feed(a2, false, reply(9, ErrorDoc(1, "InternalError", "kill failed")))
	feed(a1, true, command(10, 0, "getMore", int64(88), "collection", "users", "$db", "app"))
	notFound(a1) // given up by the client whatever the server said
	feed(a1, true, command(11, 0, "getMore", "x", "collection", "users", "$db", "app"))
	if code, _ := answered(a1).Lookup("code").AsInt64OK(); code != Unauthorized {
		t.Fatalf("getMore without an id: code %d", code)
	}
}

func mustValues(t *testing.T, a bsoncore.Array) []bsoncore.Value {
	t.Helper()
	v, err := a.Values()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// has reports whether owner has the cursor id (tests only).
func (r *Cursors) has(owner string, id int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[cursorKey{owner, id}]
	return ok && r.now().Sub(e.seen) <= r.idle
}

// TestCursorsExpireAndBound: an idle cursor is forgotten after the
// server's cursor timeout; a full registry sweeps expired ones and then
// refuses to follow more.
func TestCursorsExpireAndBound(t *testing.T) {
	now := time.Unix(0, 0)
	r := NewCursors()
	r.now = func() time.Time { return now }
	r.max = 2
	if !r.put("a", 1, &cursor{}) || !r.put("a", 2, &cursor{}) {
		t.Fatal("put refused below the bound")
	}
	if r.put("a", 3, &cursor{}) {
		t.Fatal("put past the bound")
	}
	now = now.Add(cursorIdle + time.Second)
	if r.has("a", 1) {
		t.Fatal("an idle cursor outlived the server's timeout")
	}
	if !r.put("a", 3, &cursor{}) || !r.has("a", 3) {
		t.Fatal("expired cursors not swept to make room")
	}
	if _, ok := r.take("b", 3); ok {
		t.Fatal("another owner took the cursor")
	}
	if _, ok := r.take("a", 3); !ok {
		t.Fatal("the owner could not take its cursor")
	}
	// One owner cannot fill the registry for the others.
	r = NewCursors()
	r.maxOwner = 2
	if !r.put("a", 1, &cursor{}) || !r.put("a", 2, &cursor{}) || r.put("a", 3, &cursor{}) {
		t.Fatal("the owner's quota did not hold")
	}
	if !r.put("b", 3, &cursor{}) {
		t.Fatal("another owner was crowded out")
	}
	if _, ok := r.take("a", 1); !ok || !r.put("a", 3, &cursor{}) {
		t.Fatal("a taken cursor still counts against its owner")
	}
}

func TestSessionEndsOnRefusedUnacknowledgedWrite(t *testing.T) {
	s := NewSession(Config{Decider: decider{"insert": "INSERT not permitted"}})
	var out session.Output
	err := s.FromClient(command(1, wiremessage.MoreToCome, "insert", "users", "$db", "app"), &out)
	var pe *ProtocolError
	if !errors.As(err, &pe) || !bytes.Equal(out.ToServer, hangUp) {
		t.Fatalf("refused w:0 insert: %v, %x to the server (want only the hang-up)", err, out.ToServer)
	}
}

func TestSessionHandshake(t *testing.T) {
	s := NewSession(Config{Decider: decider{}})
	var out session.Output
	comp := bsoncore.NewArrayBuilder().AppendString("zstd").Build()
	if err := s.FromClient(command(1, wiremessage.ExhaustAllowed, "hello", int32(1), "compression", comp, "$db", "admin"), &out); err != nil {
		t.Fatal(err)
	}
	var f Framer
	_ = f.Feed(out.ToServer, func(m Message) error {
		msg, err := ParseMsg(m)
		if err != nil || msg.Body.Lookup("compression").Type != 0 || msg.Flags&wiremessage.ExhaustAllowed != 0 {
			t.Fatalf("hello to the server: %v %v", msg, err)
		}
		return nil
	})
	out.Reset()
	hosts := bsoncore.NewArrayBuilder().AppendString("db2.internal:27017").Build()
	if err := s.FromServer(reply(1, bsoncore.NewDocumentBuilder().AppendBoolean("isWritablePrimary", true).AppendArray("hosts", hosts).AppendDouble("ok", 1).Build()), &out); err != nil {
		t.Fatal(err)
	}
	if r := replies(t, out.ToClient); r[0].Body.Lookup("hosts").Type != 0 {
		t.Fatalf("hello reply kept hosts: %v", r[0].Body)
	}
	if err := s.FromClient(compressedFrame(), &out); err == nil {
		t.Fatal("OP_COMPRESSED accepted")
	}
}

// compressedFrame is an OP_COMPRESSED frame.
func compressedFrame() []byte { return headerOnly(wiremessage.OpCompressed, make([]byte, 9)) }

// TestSessionAnySplit: the same exchange cut at every byte gives the same
// output.
func TestSessionAnySplit(t *testing.T) {
	client := append(command(1, 0, "find", "users", "$db", "app"), command(2, 0, "delete", "users", "$db", "app")...)
	client = append(client, command(3, 0, "getMore", int64(77), "collection", "users", "$db", "app")...)
	run := func(at int) (string, string) {
		s := NewSession(Config{Decider: decider{"delete": "no"}})
		var out, all session.Output
		for _, part := range [][]byte{client[:at], client[at:]} {
			out.Reset()
			if err := s.FromClient(part, &out); err != nil {
				t.Fatal(err)
			}
			all.ToServer = append(all.ToServer, out.ToServer...)
			all.ToClient = append(all.ToClient, out.ToClient...)
		}
		return string(all.ToServer), string(all.ToClient)
	}
	ws, wc := run(len(client))
	for at := range len(client) {
		if s, c := run(at); s != ws || c != wc {
			t.Fatalf("split at %d differs", at)
		}
	}
}

func legacyQuery(id int32, ns string, q bsoncore.Document) []byte {
	b := wiremessage.AppendQueryFlags(nil, 0)
	b = wiremessage.AppendQueryFullCollectionName(b, ns)
	b = wiremessage.AppendQueryNumberToSkip(b, 0)
	b = wiremessage.AppendQueryNumberToReturn(b, -1)
	b = append(b, q...)
	h := wiremessage.AppendHeader(nil, int32(headerLen+len(b)), id, 0, wiremessage.OpQuery)
	return append(h, b...)
}

// TestSessionLegacyHandshake: OP_QUERY carries only the handshake; its
// OP_REPLY is rewritten like hello's; any other OP_QUERY is refused with
// an OP_REPLY error.
func TestSessionLegacyHandshake(t *testing.T) {
	s := NewSession(Config{Decider: decider{}})
	var out session.Output
	comp := bsoncore.NewArrayBuilder().AppendString("snappy").Build()
	isMaster := bsoncore.NewDocumentBuilder().AppendInt32("isMaster", 1).AppendArray("compression", comp).Build()
	if err := s.FromClient(legacyQuery(1, "admin.$cmd", isMaster), &out); err != nil {
		t.Fatal(err)
	}
	var f Framer
	_ = f.Feed(out.ToServer, func(m Message) error {
		q, err := ParseQuery(m)
		if err != nil || q.Query.Lookup("compression").Type != 0 || q.Query.Lookup("isMaster").Int32() != 1 {
			t.Fatalf("isMaster to the server: %v %v", q.Query, err)
		}
		return nil
	})
	out.Reset()
	hosts := bsoncore.NewArrayBuilder().AppendString("db2.internal:27017").Build()
	if err := s.FromServer(AppendReply(nil, 50, 1, bsoncore.NewDocumentBuilder().AppendBoolean("ismaster", true).AppendArray("hosts", hosts).AppendString("me", "db1:27017").Build()), &out); err != nil {
		t.Fatal(err)
	}
	_ = f.Feed(out.ToClient, func(m Message) error {
		_, docs, err := ParseReply(m)
		if err != nil || docs[0].Lookup("hosts").Type != 0 || docs[0].Lookup("me").Type != 0 || m.ResponseTo != 1 {
			t.Fatalf("isMaster reply: %v %v", docs, err)
		}
		return nil
	})
	out.Reset()
	if err := s.FromClient(legacyQuery(2, "app.users", bsoncore.NewDocumentBuilder().AppendString("name", "x").Build()), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.ToServer) != 0 {
		t.Fatal("a legacy query reached the server")
	}
	_ = f.Feed(out.ToClient, func(m Message) error {
		_, docs, err := ParseReply(m)
		if err != nil || m.ResponseTo != 2 || docs[0].Lookup("code").Int32() != Unauthorized {
			t.Fatalf("legacy query refusal: %v %v", docs, err)
		}
		return nil
	})
}

func TestSessionRefusesReusedRequestIDs(t *testing.T) {
	s := NewSession(Config{Decider: decider{}})
	var out session.Output
	if err := s.FromClient(command(7, 0, "hello", int32(1), "$db", "admin"), &out); err != nil {
		t.Fatal(err)
	}
	if err := s.FromClient(command(7, 0, "find", "users", "$db", "app"), &out); err == nil {
		t.Fatal("a second request with a pending id accepted")
	}
}

// approvals holds every command it is asked about.
type approvals struct{ asked []string }

func (a *approvals) Ask(r session.HoldRequest) session.Ticket {
	a.asked = append(a.asked, r.SQL)
	return session.Ticket{ID: "req-1", Hold: true}
}

// TestSessionHoldsForApproval: a command needing approval is held (later
// commands wait behind it), then runs once approved, or is refused with
// the human's reason; the commands that waited go on either way.
func TestSessionHoldsForApproval(t *testing.T) {
	for _, approved := range []bool{true, false} {
		appr := &approvals{}
		s := NewSession(Config{Decider: decider{"delete": "approval: unbounded"}, Approvals: appr})
		var out session.Output
		_ = s.FromClient(command(1, 0, "delete", "users", "deletes", bsoncore.NewArrayBuilder().AppendDocument(doc("q", doc(), "limit", int32(0))).Build(), "$db", "app"), &out)
		if out.Hold != "req-1" || len(out.ToServer) != 0 || len(appr.asked) != 1 {
			t.Fatalf("not held: %+v", out)
		}
		out.Reset()
		_ = s.FromClient(command(2, 0, "ping", int32(1), "$db", "app"), &out)
		if len(out.ToServer) != 0 {
			t.Fatal("a command passed a held one")
		}
		s.Resume(session.Verdict{ID: "req-1", Approved: approved, Message: "denied by bob"}, &out)
		var f Framer
		var sent []string
		_ = f.Feed(out.ToServer, func(m Message) error {
			msg, _ := ParseMsg(m)
			sent = append(sent, msg.Command())
			return nil
		})
		want := "delete ping"
		if !approved {
			want = "ping"
			if r := replies(t, out.ToClient); len(r) != 1 || !strings.Contains(r[0].Body.String(), "denied by bob") {
				t.Fatalf("denial: %v", r)
			}
		}
		if strings.Join(sent, " ") != want {
			t.Fatalf("approved %v: sent %v, want %s", approved, sent, want)
		}
	}
}

// TestSessionGuardrails: find gets maxTimeMS from the statement timeout
// (a lower one of the client's stays), and a result past max_rows is cut
// with an error and the server's cursor killed by sluice.
func TestSessionGuardrails(t *testing.T) {
	tgt := session.Target{}
	tgt.Guardrails.StatementTimeout = 2 * time.Second
	tgt.Guardrails.MaxRows = 3
	s := NewSession(Config{Target: tgt, Decider: decider{}})
	var out session.Output
	_ = s.FromClient(command(1, 0, "find", "users", "$db", "app"), &out)
	var f Framer
	var body bsoncore.Document
	_ = f.Feed(out.ToServer, func(m Message) error { msg, _ := ParseMsg(m); body = msg.Body; return nil })
	if ms, _ := body.Lookup("maxTimeMS").AsInt64OK(); ms != 2000 {
		t.Fatalf("maxTimeMS: %v", body)
	}
	out.Reset()
	_ = s.FromClient(command(2, 0, "find", "users", "maxTimeMS", int32(500), "$db", "app"), &out)
	if !bytes.Contains(out.ToServer, []byte("maxTimeMS")) || bytes.Contains(out.ToServer, []byte{0xd0, 0x07, 0, 0}) {
		t.Fatal("a lower client limit was raised")
	}
	// explain with executionStats runs the command it wraps: limited too.
	out.Reset()
	_ = s.FromClient(command(99, 0, "explain", doc("find", "users"), "verbosity", "executionStats", "$db", "app"), &out)
	_ = f.Feed(out.ToServer, func(m Message) error { msg, _ := ParseMsg(m); body = msg.Body; return nil })
	if ms, _ := body.Lookup("maxTimeMS").AsInt64OK(); ms != 2000 {
		t.Fatalf("explain's maxTimeMS: %v", body)
	}
	ab := bsoncore.NewArrayBuilder()
	for i := range 2 {
		ab.AppendDocument(doc("_id", int32(i)))
	}
	two := ab.Build()
	batch := func(to int32, key string, id int64) []byte {
		return reply(to, bsoncore.NewDocumentBuilder().AppendDocument("cursor", bsoncore.NewDocumentBuilder().
			AppendInt64("id", id).AppendString("ns", "app.users").AppendArray(key, two).Build()).AppendDouble("ok", 1).Build())
	}
	out.Reset()
	_ = s.FromServer(batch(1, "firstBatch", 77), &out)
	_ = s.FromServer(batch(2, "firstBatch", 0), &out)
	out.Reset()
	_ = s.FromClient(command(3, 0, "getMore", int64(77), "collection", "users", "$db", "app"), &out)
	out.Reset()
	_ = s.FromServer(batch(3, "nextBatch", 77), &out)
	r := replies(t, out.ToClient)
	if code, _ := r[0].Body.Lookup("code").AsInt64OK(); code != OperationFailed || !strings.Contains(r[0].Body.String(), "max_rows") {
		t.Fatalf("cut: %v", r[0].Body)
	}
	if !bytes.Contains(out.ToServer, []byte("killCursors")) {
		t.Fatal("the server's cursor was not killed")
	}
	out.Reset()
	_ = s.FromClient(command(4, 0, "getMore", int64(77), "collection", "users", "$db", "app"), &out)
	if r := replies(t, out.ToClient); len(r) != 1 {
		t.Fatal("getMore on a cut cursor passed")
	}
}

// TestSessionReadsViewsThroughTheirDefinitions: before a find on a
// collection it has not placed, the session asks the server (its own
// listCollections; the find waits), learns that "contacts" is a view over
// customers moving email to "mail", asks about customers in turn, and then
// masks "mail" in the reply. DDL through the session forgets the answers.
func TestSessionReadsViewsThroughTheirDefinitions(t *testing.T) {
	set, err := cedar.Default()
	if err != nil {
		t.Fatal(err)
	}
	target := session.Target{Name: "demo-mongo", Protocol: "mongodb"}
	auth := policy.NewEngine(set).Session(session.Identity{Subject: "a", Groups: []string{"analysts"}}, target)
	s := NewSession(Config{Target: target, Decider: auth})
	var out session.Output
	own := func() (int32, bsoncore.Document) {
		t.Helper()
		var f Framer
		var id int32
		var body bsoncore.Document
		_ = f.Feed(out.ToServer, func(m Message) error { msg, _ := ParseMsg(m); id, body = m.RequestID, msg.Body; return nil })
		if body == nil || body.Index(0).Key() != "listCollections" {
			t.Fatalf("sent %v, want listCollections", body)
		}
		return id, body
	}
	listed := func(to int32, docs ...bsoncore.Document) []byte {
		arr := bsoncore.NewArrayBuilder()
		for _, d := range docs {
			arr.AppendDocument(d)
		}
		return reply(to, bsoncore.NewDocumentBuilder().AppendDocument("cursor", bsoncore.NewDocumentBuilder().
			AppendInt64("id", 0).AppendArray("firstBatch", arr.Build()).Build()).AppendDouble("ok", 1).Build())
	}
	_ = s.FromClient(command(1, 0, "find", "contacts", "$db", "sluice_demo"), &out)
	id, body := own()
	if !strings.Contains(body.String(), "contacts") || len(out.ToClient) != 0 {
		t.Fatalf("first lookup: %v", body)
	}
	pipe := bsoncore.NewArrayBuilder().AppendDocument(doc("$project", doc("mail", "$email"))).Build()
	out.Reset()
	_ = s.FromServer(listed(id, doc("name", "contacts", "type", "view", "options", doc("viewOn", "customers", "pipeline", pipe))), &out)
	id, body = own()
	if !strings.Contains(body.String(), "customers") {
		t.Fatalf("second lookup: %v", body)
	}
	out.Reset()
	_ = s.FromServer(listed(id, doc("name", "customers", "type", "collection")), &out)
	var f Framer
	var sent bsoncore.Document
	_ = f.Feed(out.ToServer, func(m Message) error { msg, _ := ParseMsg(m); sent = msg.Body; return nil })
	if sent == nil || sent.Index(0).Key() != "find" {
		t.Fatalf("the find was not released: %v", sent)
	}
	out.Reset()
	batch := bsoncore.NewArrayBuilder().AppendDocument(doc("_id", int32(1), "mail", "alice@example.com")).Build()
	_ = s.FromServer(reply(1, bsoncore.NewDocumentBuilder().AppendDocument("cursor", bsoncore.NewDocumentBuilder().
		AppendInt64("id", 0).AppendArray("firstBatch", batch).Build()).AppendDouble("ok", 1).Build()), &out)
	if r := replies(t, out.ToClient); len(r) != 1 || strings.Contains(r[0].Body.String(), "alice@") || !strings.Contains(r[0].Body.String(), "a***@example.com") {
		t.Fatalf("view's reply: %v", r)
	}
	// A filter on the view's masked field is the inference channel.
	out.Reset()
	_ = s.FromClient(command(2, 0, "find", "contacts", "filter", doc("mail", "x"), "$db", "sluice_demo"), &out)
	if r := replies(t, out.ToClient); len(r) != 1 || !strings.Contains(r[0].Body.String(), "inference") {
		t.Fatalf("filter on the view's mail: %v", r)
	}
	// A listCollections answer sluice cannot read leaves the name unknown:
	// the command is refused after the bounded rounds, never passed.
	s2 := NewSession(Config{Target: target, Decider: auth})
	out.Reset()
	_ = s2.FromClient(command(1, 0, "find", "mystery", "$db", "sluice_demo"), &out)
	for round := 0; round < maxLookupRounds+1 && len(out.ToClient) == 0; round++ {
		id, _ := own()
		out.Reset()
		_ = s2.FromServer(reply(id, ErrorDoc(13, "Unauthorized", "no")), &out)
	}
	if r := replies(t, out.ToClient); len(r) != 1 || !strings.Contains(r[0].Body.String(), "is a view") {
		t.Fatalf("unknown collection: %v", r)
	}
}

// TestSessionOwnRequestIDsNeverTakeAClients: a client that uses the id
// sluice would give its next own command keeps its reply; sluice's
// listCollections takes another id, and a listCollections answer naming a
// collection sluice did not ask about teaches nothing.
func TestSessionOwnRequestIDsNeverTakeAClients(t *testing.T) {
	set, err := cedar.Default()
	if err != nil {
		t.Fatal(err)
	}
	target := session.Target{Name: "demo-mongo", Protocol: "mongodb"}
	s := NewSession(Config{Target: target, Decider: policy.NewEngine(set).Session(session.Identity{Subject: "a", Groups: []string{"analysts"}}, target)})
	var out session.Output
	next := s.nextID + 1
	_ = s.FromClient(command(next, 0, "ping", int32(1), "$db", "app"), &out)
	out.Reset()
	_ = s.FromClient(command(7, 0, "find", "contacts", "$db", "app"), &out)
	var f Framer
	var lookupID int32
	_ = f.Feed(out.ToServer, func(m Message) error { lookupID = m.RequestID; return nil })
	if lookupID == next || lookupID == 0 {
		t.Fatalf("sluice's lookup took id %d (the client's ping has %d)", lookupID, next)
	}
	out.Reset()
	_ = s.FromServer(reply(next, bsoncore.NewDocumentBuilder().AppendDouble("ok", 1).Build()), &out)
	if r := replies(t, out.ToClient); len(r) != 1 || r[0].Body.Lookup("ok").Double() != 1 {
		t.Fatalf("the ping's reply: %v", r)
	}
	batch := bsoncore.NewArrayBuilder().
		AppendDocument(doc("name", "contacts", "type", "collection")).
		AppendDocument(doc("name", "other", "type", "collection")).Build()
	out.Reset()
	_ = s.FromServer(reply(lookupID, bsoncore.NewDocumentBuilder().AppendDocument("cursor", bsoncore.NewDocumentBuilder().
		AppendInt64("id", 0).AppendArray("firstBatch", batch).Build()).AppendDouble("ok", 1).Build()), &out)
	if _, known := s.MongoView("app", "other"); known {
		t.Fatal("learnt a collection sluice did not ask about")
	}
	if _, known := s.MongoView("app", "contacts"); !known {
		t.Fatal("did not learn the collection asked about")
	}
}
