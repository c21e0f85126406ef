package mongo

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/sluicedb/sluice/devstack"
	"github.com/xdg-go/scram"
)

// conn round-trips OP_MSG commands on a raw connection with this
// package's codec.
func conn(t *testing.T, addr string) RoundTrip {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var f Framer
	id := int32(0)
	buf := make([]byte, 64<<10)
	return func(cmd bsoncore.Document) (bsoncore.Document, error) {
		id++
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(AppendMsg(nil, id, 0, Msg{Body: cmd})); err != nil {
			return nil, err
		}
		for {
			n, err := c.Read(buf)
			if err != nil {
				return nil, err
			}
			var reply bsoncore.Document
			err = f.Feed(buf[:n], func(m Message) error {
				if m.ResponseTo != id {
					t.Fatalf("reply to %d, want %d", m.ResponseTo, id)
				}
				msg, err := ParseMsg(m)
				if err != nil {
					return err
				}
				reply = append(bsoncore.Document(nil), msg.Body...)
				return nil
			})
			if err != nil || reply != nil {
				return reply, err
			}
		}
	}
}

// TestLoginAgainstFerretDB performs the brokered SCRAM-SHA-256 login on a
// raw connection to the real FerretDB with authentication on, then runs a
// command as that user; a wrong password is refused.
func TestLoginAgainstFerretDB(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	f, err := devstack.StartFerretDB(ctx, t.TempDir(), port, "sluice", "login-test-pw")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()

	rt := conn(t, f.Addr())
	hello, err := rt(bsoncore.NewDocumentBuilder().AppendInt32("hello", 1).AppendString("$db", "admin").Build())
	if err != nil || commandError(hello) != nil {
		t.Fatalf("hello: %v %v", hello, err)
	}
	count := bsoncore.NewDocumentBuilder().AppendString("count", "users").AppendString("$db", "app").Build()
	if r, err := rt(count); err != nil || commandError(r) == nil {
		t.Fatalf("count before login: %v %v", r, err)
	}
	if err := Login(rt, "admin", "sluice", "login-test-pw"); err != nil {
		t.Fatal(err)
	}
	if r, err := rt(count); err != nil || commandError(r) != nil {
		t.Fatalf("count after login: %v %v", r, err)
	}

	bad := conn(t, f.Addr())
	if err := Login(bad, "admin", "sluice", "wrong"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("wrong password: %v", err)
	}
}

// scramServer answers saslStart/saslContinue as a SCRAM-SHA-256 server for
// user/password. emptyExchange: after its final message it says done:
// false and waits for one empty saslContinue (MongoDB's default);
// otherwise it says done: true at once (skipEmptyExchange, FerretDB).
func scramServer(t *testing.T, user, password string, emptyExchange bool) RoundTrip {
	t.Helper()
	cl, err := scram.SHA256.NewClient(user, password, "")
	if err != nil {
		t.Fatal(err)
	}
	creds := cl.GetStoredCredentials(scram.KeyFactors{Salt: "0123456789abcdef", Iters: 4096})
	srv, err := scram.SHA256.NewServer(func(u string) (scram.StoredCredentials, error) {
		if u != user {
			return scram.StoredCredentials{}, errors.New("no such user")
		}
		return creds, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	conv := srv.NewConversation()
	finished := false
	return func(cmd bsoncore.Document) (bsoncore.Document, error) {
		_, payload, _ := cmd.Lookup("payload").BinaryOK()
		b := bsoncore.NewDocumentBuilder().AppendInt32("conversationId", 1)
		if finished {
			return b.AppendBoolean("done", true).AppendBinary("payload", 0, nil).AppendDouble("ok", 1).Build(), nil
		}
		out, err := conv.Step(string(payload))
		if err != nil {
			return ErrorDoc(18, "AuthenticationFailed", "Authentication failed."), nil
		}
		done := conv.Done()
		if done && emptyExchange {
			finished, done = true, false
		}
		return b.AppendBoolean("done", done).AppendBinary("payload", 0, []byte(out)).AppendDouble("ok", 1).Build(), nil
	}
}

func TestLoginEndsEitherWay(t *testing.T) {
	for _, empty := range []bool{false, true} {
		if err := Login(scramServer(t, "sluice", "pw", empty), "admin", "sluice", "pw"); err != nil {
			t.Fatalf("empty exchange %v: %v", empty, err)
		}
		if err := Login(scramServer(t, "sluice", "pw", empty), "admin", "sluice", "other"); err == nil {
			t.Fatalf("empty exchange %v: a wrong password logged in", empty)
		}
	}
}
