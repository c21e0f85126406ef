package mongo

import (
	"bytes"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/guard"
	"github.com/sluicedb/sluice/policy"
)

// FuzzCodec feeds arbitrary bytes, split at an arbitrary point, to the
// framer and parsers: no panic, the framer's output does not depend on
// the split, and whatever parses as OP_MSG re-encodes to a message that
// parses to the same command.
func FuzzCodec(f *testing.F) {
	f.Add(AppendMsg(nil, 1, 0, insertMsg(wiremessage.ChecksumPresent)), uint16(5))
	f.Add(AppendMsg(nil, 2, 0, Msg{Body: doc("find", "users", "$db", "app")}), uint16(17))
	f.Add(AppendReply(nil, 3, 1, doc("ismaster", int32(1))), uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		at := int(split) % (len(data) + 1)
		collect := func(chunks ...[]byte) ([][]byte, error) {
			fr := Framer{Max: 1 << 20}
			var out [][]byte
			for _, c := range chunks {
				err := fr.Feed(c, func(m Message) error {
					out = append(out, bytes.Clone(m.Raw))
					if m.OpCode == wiremessage.OpMsg {
						if msg, err := ParseMsg(m); err == nil {
							back := AppendMsg(nil, m.RequestID, m.ResponseTo, msg)
							var again Framer
							_ = again.Feed(back, func(m2 Message) error {
								msg2, err := ParseMsg(m2)
								if err != nil || msg2.Command() != msg.Command() || len(msg2.Sequences) != len(msg.Sequences) {
									t.Fatalf("re-encoded OP_MSG: %v", err)
								}
								return nil
							})
						}
					}
					_, _ = ParseQuery(m)
					_, _, _ = ParseReply(m)
					return nil
				})
				if err != nil {
					return out, err
				}
			}
			return out, nil
		}
		whole, errWhole := collect(data)
		parts, errParts := collect(data[:at], data[at:])
		if (errWhole == nil) != (errParts == nil) || len(whole) != len(parts) {
			t.Fatalf("split at %d: %d messages (%v) vs %d (%v)", at, len(whole), errWhole, len(parts), errParts)
		}
		for i := range whole {
			if !bytes.Equal(whole[i], parts[i]) {
				t.Fatalf("split at %d: message %d differs", at, i)
			}
		}
	})
}

// FuzzSession feeds arbitrary client and server bytes, each split at an
// arbitrary point, to a session deciding with the default policies (the
// demo's tagged customers: replies are masked) and, on odd seeds, logging
// in itself: no panic, and the bytes it sends each way (and whether it
// fails) do not depend on the splits.
func FuzzSession(f *testing.F) {
	set, err := cedar.Default()
	if err != nil {
		f.Fatal(err)
	}
	engine := policy.NewEngine(set)
	target := session.Target{Name: "demo-mongo", Protocol: "mongodb", Guardrails: guard.Limits{StatementTimeout: time.Second, MaxRows: 3}}
	brokered := target
	brokered.Login = &session.Login{User: "agent", Password: "pw"}
	people := bsoncore.NewArrayBuilder().
		AppendDocument(doc("_id", int32(1), "email", "a@b.c", "ssn", "123-45-6789", "profile", doc("phone", "555"), "cards", bsoncore.NewArrayBuilder().AppendDocument(doc("number", "4111")).Build())).
		AppendDocument(doc("_id", int32(2), "email", int32(7))).Build()
	batch := reply(1, bsoncore.NewDocumentBuilder().AppendDocument("cursor", bsoncore.NewDocumentBuilder().
		AppendInt64("id", 5).AppendString("ns", "sluice_demo.customers").AppendArray("firstBatch", people).Build()).AppendDouble("ok", 1).Build())
	f.Add(command(1, 0, "find", "customers", "$db", "sluice_demo"), batch, uint16(3), uint16(9))
	f.Add(append(command(1, 0, "find", "customers", "$db", "sluice_demo"), command(2, 0, "getMore", int64(5), "collection", "customers", "$db", "sluice_demo")...),
		append(batch, reply(2, bsoncore.NewDocumentBuilder().AppendDocument("cursor", bsoncore.NewDocumentBuilder().
			AppendInt64("id", 0).AppendArray("nextBatch", people).Build()).AppendDouble("ok", 1).Build())...), uint16(30), uint16(100))
	f.Add(command(1, 0, "find", "users", "$db", "app"), cursorReply(1, 77), uint16(3), uint16(9))
	f.Add(append(command(1, 0, "delete", "users", "$db", "app"), command(2, wiremessage.MoreToCome, "insert", "users", "$db", "app")...), []byte{}, uint16(40), uint16(0))
	f.Add(command(1, wiremessage.ExhaustAllowed, "hello", int32(1), "$db", "admin"), reply(1, ErrorDoc(1, "x", "y")), uint16(0), uint16(5))
	f.Fuzz(func(t *testing.T, client, server []byte, cs, ss uint16) {
		run := func(ca, sa int) (toServer, toClient []byte, failed bool) {
			tgt := target
			if cs%2 == 1 {
				tgt = brokered
			}
			auth := engine.Session(session.Identity{Subject: "fuzz", Groups: []string{"analysts"}}, tgt)
			s := NewSession(Config{Target: tgt, Decider: auth, nonce: func() string { return "fuzz-nonce" }})
			var out session.Output
			feed := func(fn func([]byte, *session.Output) error, parts ...[]byte) {
				for _, p := range parts {
					if failed {
						return
					}
					out.Reset()
					if err := fn(p, &out); err != nil {
						failed = true
					}
					toServer = append(toServer, out.ToServer...)
					toClient = append(toClient, out.ToClient...)
				}
			}
			feed(s.FromClient, client[:ca], client[ca:])
			feed(s.FromServer, server[:sa], server[sa:])
			return
		}
		ws, wc, wf := run(len(client), len(server))
		gs, gc, gf := run(int(cs)%(len(client)+1), int(ss)%(len(server)+1))
		if wf != gf || (!wf && (!bytes.Equal(ws, gs) || !bytes.Equal(wc, gc))) {
			t.Fatalf("splits change the outcome: failed %v/%v", wf, gf)
		}
	})
}
