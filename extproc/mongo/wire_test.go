package mongo

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

func doc(kv ...any) bsoncore.Document {
	b := bsoncore.NewDocumentBuilder()
	for i := 0; i < len(kv); i += 2 {
		switch v := kv[i+1].(type) {
		case string:
			b.AppendString(kv[i].(string), v)
		case int32:
			b.AppendInt32(kv[i].(string), v)
		case int64:
			b.AppendInt64(kv[i].(string), v)
		case bsoncore.Document:
			b.AppendDocument(kv[i].(string), v)
		case bsoncore.Array:
			b.AppendArray(kv[i].(string), v)
		default:
			panic(fmt.Sprintf("doc: %T", v))
		}
	}
	return b.Build()
}

// insertMsg is an insert as drivers send it: the command, and the
// documents in a kind-1 sequence.
func insertMsg(flags wiremessage.MsgFlag) Msg {
	return Msg{
		Flags: flags,
		Body:  doc("insert", "users", "$db", "app"),
		Sequences: []Sequence{{Identifier: "documents", Docs: []bsoncore.Document{
			doc("_id", int32(1), "email", "a@example.com"), doc("_id", int32(2), "email", "b@example.com"),
		}}},
	}
}

func frames(t *testing.T, f *Framer, chunks ...[]byte) []Message {
	t.Helper()
	var got []Message
	for _, c := range chunks {
		err := f.Feed(c, func(m Message) error {
			m.Raw = bytes.Clone(m.Raw) // valid only until the next Feed
			got = append(got, m)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return got
}

func TestMsgRoundTrip(t *testing.T) {
	for _, flags := range []wiremessage.MsgFlag{0, wiremessage.ChecksumPresent, wiremessage.MoreToCome | wiremessage.ChecksumPresent, wiremessage.ExhaustAllowed} {
		raw := AppendMsg(nil, 7, 0, insertMsg(flags))
		var f Framer
		ms := frames(t, &f, raw)
		if len(ms) != 1 || ms[0].RequestID != 7 || ms[0].OpCode != wiremessage.OpMsg {
			t.Fatalf("flags %v: framed %+v", flags, ms)
		}
		m, err := ParseMsg(ms[0])
		if err != nil {
			t.Fatalf("flags %v: %v", flags, err)
		}
		if m.Command() != "insert" || m.Flags != flags || len(m.Sequences) != 1 || m.Sequences[0].Identifier != "documents" || len(m.Sequences[0].Docs) != 2 {
			t.Fatalf("flags %v: parsed %+v", flags, m)
		}
		if again := AppendMsg(nil, 7, 0, m); !bytes.Equal(again, raw) {
			t.Fatalf("flags %v: re-encoded differs", flags)
		}
	}
}

func TestChecksumVerified(t *testing.T) {
	raw := AppendMsg(nil, 1, 0, insertMsg(wiremessage.ChecksumPresent))
	raw[len(raw)-10] ^= 0xff // inside the last document: the sum no longer holds
	_, err := ParseMsg(Message{OpCode: wiremessage.OpMsg, Raw: raw})
	var pe *ProtocolError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("corrupted message: %v", err)
	}
}

// TestFramerAnySplit feeds three messages cut at every byte pair: the same
// messages come out whole, in order.
func TestFramerAnySplit(t *testing.T) {
	var stream []byte
	stream = AppendMsg(stream, 1, 0, insertMsg(0))
	stream = AppendMsg(stream, 2, 0, Msg{Body: doc("find", "users", "$db", "app")})
	stream = AppendMsg(stream, 3, 0, insertMsg(wiremessage.ChecksumPresent))
	for i := 0; i <= len(stream); i++ {
		for j := i; j <= len(stream); j += 7 {
			var f Framer
			ms := frames(t, &f, stream[:i], stream[i:j], stream[j:])
			if len(ms) != 3 || f.Pending() != 0 {
				t.Fatalf("split %d/%d: %d messages, %d pending", i, j, len(ms), f.Pending())
			}
			for k, m := range ms {
				if m.RequestID != int32(k+1) {
					t.Fatalf("split %d/%d: message %d has id %d", i, j, k, m.RequestID)
				}
				if _, err := ParseMsg(m); err != nil {
					t.Fatalf("split %d/%d: %v", i, j, err)
				}
			}
		}
	}
}

func TestFramerRefusesBadLengths(t *testing.T) {
	for _, n := range []int32{0, 15, -1, DefaultMaxMessageSize + 1} {
		var f Framer
		b := bsoncore.AppendInt32(nil, n)
		if err := f.Feed(b, func(Message) error { return nil }); err == nil {
			t.Fatalf("length %d accepted", n)
		}
	}
	f := Framer{Max: 1000}
	if err := f.Feed(AppendMsg(nil, 1, 0, Msg{Body: doc("x", strings.Repeat("a", 2000))}), func(Message) error { return nil }); err == nil {
		t.Fatal("a message over Max accepted")
	}
}

func TestMsgMalformed(t *testing.T) {
	good := AppendMsg(nil, 1, 0, insertMsg(0))
	for name, raw := range map[string][]byte{
		"unknown required flag": func() []byte { b := bytes.Clone(good); b[16] |= 1 << 3; return b }(),
		"no command":            headerOnly(wiremessage.OpMsg, []byte{0, 0, 0, 0}),
		"two commands": func() []byte {
			b := AppendMsg(nil, 1, 0, Msg{Body: doc("find", "a")})
			b = append(b, 0)
			b = append(b, doc("find", "b")...)
			return bsoncore.UpdateLength(b, 0, int32(len(b)))
		}(),
		"unknown section kind": func() []byte {
			b := bytes.Clone(good)
			b[20] = 2
			return b
		}(),
		"document cut short": func() []byte {
			b := bytes.Clone(good[:len(good)-3])
			return bsoncore.UpdateLength(b, 0, int32(len(b)))
		}(),
	} {
		if _, err := ParseMsg(Message{OpCode: wiremessage.OpMsg, Raw: raw}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// headerOnly is a message of op with body after a bare header.
func headerOnly(op wiremessage.OpCode, body []byte) []byte {
	b := wiremessage.AppendHeader(nil, int32(headerLen+len(body)), 1, 0, op)
	return append(b, body...)
}

func TestLegacyHandshake(t *testing.T) {
	// A driver's first message on a new connection.
	q := wiremessage.AppendQueryFlags(nil, 0)
	q = wiremessage.AppendQueryFullCollectionName(q, "admin.$cmd")
	q = wiremessage.AppendQueryNumberToSkip(q, 0)
	q = wiremessage.AppendQueryNumberToReturn(q, -1)
	q = append(q, doc("isMaster", int32(1), "client", doc("driver", doc("name", "pymongo")))...)
	raw := headerOnly(wiremessage.OpQuery, q)
	var f Framer
	ms := frames(t, &f, raw)
	query, err := ParseQuery(ms[0])
	if err != nil {
		t.Fatal(err)
	}
	if query.Collection != "admin.$cmd" || query.N != -1 || query.Query.Index(0).Key() != "isMaster" {
		t.Fatalf("parsed %+v", query)
	}
	reply := AppendReply(nil, 9, ms[0].RequestID, doc("ismaster", int32(1), "maxWireVersion", int32(21)))
	rm := frames(t, &f, reply)
	_, docs, err := ParseReply(rm[0])
	if err != nil || len(docs) != 1 || rm[0].ResponseTo != ms[0].RequestID {
		t.Fatalf("reply: %v %v", docs, err)
	}
}

func TestRefusalAnswersTheRequest(t *testing.T) {
	req := Message{RequestID: 42, OpCode: wiremessage.OpMsg}
	raw, err := Refusal(nil, 100, req, "sluice: delete on app.users refused by policy no-unbounded-delete")
	if err != nil {
		t.Fatal(err)
	}
	var f Framer
	ms := frames(t, &f, raw)
	m, err := ParseMsg(ms[0])
	if err != nil {
		t.Fatal(err)
	}
	if ms[0].ResponseTo != 42 || m.Body.Lookup("code").Int32() != Unauthorized || m.Body.Lookup("codeName").StringValue() != "Unauthorized" ||
		m.Body.Lookup("ok").Double() != 0 || !strings.Contains(m.Body.Lookup("errmsg").StringValue(), "no-unbounded-delete") {
		t.Fatalf("refusal %v", m.Body)
	}
	if _, err := Refusal(nil, 1, Message{OpCode: wiremessage.OpCompressed}, "x"); err == nil {
		t.Fatal("a refusal for OP_COMPRESSED")
	}
}
