package mongo

import (
	"bytes"
	"testing"

	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
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
