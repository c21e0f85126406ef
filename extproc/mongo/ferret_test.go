package mongo

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/devstack"
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

// wire carries a Session's bytes to a real server, as the tunnel does.
type wire struct {
	t   *testing.T
	c   net.Conn
	s   *Session
	buf []byte
}

// do sends one client message through the session and returns the
// replies the client gets (none for a one-way message).
func (w *wire) do(msg []byte) []Msg {
	w.t.Helper()
	var out session.Output
	err := w.s.FromClient(msg, &out)
	got := out.ToClient
	w.write(out.ToServer)
	if err != nil {
		w.t.Fatalf("session: %v", err)
	}
	for len(got) == 0 {
		_ = w.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := w.c.Read(w.buf)
		if err != nil {
			w.t.Fatalf("server: %v", err)
		}
		out.Reset()
		if err := w.s.FromServer(w.buf[:n], &out); err != nil {
			w.t.Fatalf("session, from server: %v", err)
		}
		w.write(out.ToServer)
		got = append(got, out.ToClient...)
	}
	return replies(w.t, got)
}

func (w *wire) write(b []byte) {
	if len(b) > 0 {
		if _, err := w.c.Write(b); err != nil {
			w.t.Fatal(err)
		}
	}
}

// TestSessionAgainstFerretDB runs a Session between a scripted client and
// the real FerretDB with SCRAM on: sluice logs in with the target's login
// (the client sends none, and its speculativeAuthenticate is dropped),
// masks tagged fields in the first batch and in each getMore, refuses a
// filter on a masked field in place, and a refused unacknowledged write
// hangs up the server's connection.
func TestSessionAgainstFerretDB(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	f, err := devstack.StartFerretDB(ctx, t.TempDir(), port, "sluice", "session-test-pw")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	seed := conn(t, f.Addr())
	if err := Login(seed, "admin", "sluice", "session-test-pw"); err != nil {
		t.Fatal(err)
	}
	ins := bsoncore.NewDocumentBuilder().AppendString("insert", "customers").AppendString("$db", "sluice_demo")
	arr := bsoncore.NewArrayBuilder()
	for i := range 5 {
		card := bsoncore.NewDocumentBuilder().AppendString("number", "4111111111111111").AppendString("brand", "visa").Build()
		arr.AppendDocument(doc("_id", int32(i), "name", "n", "email", "alice@example.com", "ssn", "123-45-6789",
			"profile", doc("phone", "+1 555 0100", "tier", "gold"), "cards", bsoncore.NewArrayBuilder().AppendDocument(card).Build()))
	}
	if r, err := seed(ins.AppendArray("documents", arr.Build()).Build()); err != nil || commandError(r) != nil {
		t.Fatalf("seed: %v %v", r, err)
	}

	set, err := cedar.Default()
	if err != nil {
		t.Fatal(err)
	}
	target := session.Target{Name: "demo-mongo", Protocol: "mongodb", Login: &session.Login{User: "sluice", Password: "session-test-pw"}}
	auth := policy.NewEngine(set).Session(session.Identity{Subject: "a", Groups: []string{"analysts"}}, target)
	c, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := &wire{t: t, c: c, s: NewSession(Config{Target: target, Decider: auth}), buf: make([]byte, 1<<20)}

	spec := doc("mechanism", "SCRAM-SHA-256", "db", "admin")
	r := w.do(command(1, 0, "hello", int32(1), "speculativeAuthenticate", spec, "$db", "admin"))
	if len(r) != 1 || commandError(r[0].Body) != nil || r[0].Body.Lookup("speculativeAuthenticate").Type != 0 {
		t.Fatalf("hello: %v", r)
	}
	leaks := func(b bsoncore.Document) bool {
		s := b.String()
		return strings.Contains(s, "alice@") || strings.Contains(s, "123-45") || strings.Contains(s, "555 0100") || strings.Contains(s, "41111111")
	}
	r = w.do(command(2, 0, "find", "customers", "batchSize", int32(2), "$db", "sluice_demo"))
	cur, _ := r[0].Body.Lookup("cursor").DocumentOK()
	id, _ := cur.Lookup("id").AsInt64OK()
	if commandError(r[0].Body) != nil || id == 0 || leaks(r[0].Body) || !strings.Contains(r[0].Body.String(), "a***@example.com") {
		t.Fatalf("find: %v", r[0].Body)
	}
	for i := int32(3); ; i++ {
		r = w.do(command(i, 0, "getMore", id, "collection", "customers", "batchSize", int32(2), "$db", "sluice_demo"))
		if commandError(r[0].Body) != nil || leaks(r[0].Body) {
			t.Fatalf("getMore: %v", r[0].Body)
		}
		cur, _ = r[0].Body.Lookup("cursor").DocumentOK()
		if id, _ = cur.Lookup("id").AsInt64OK(); id == 0 {
			break
		}
	}
	r = w.do(command(10, 0, "find", "customers", "filter", doc("ssn", "123-45-6789"), "$db", "sluice_demo"))
	if code, _ := r[0].Body.Lookup("code").AsInt64OK(); code != Unauthorized {
		t.Fatalf("filter on a masked field: %v", r[0].Body)
	}
	r = w.do(command(11, 0, "count", "customers", "$db", "sluice_demo"))
	if n, _ := r[0].Body.Lookup("n").AsInt64OK(); n != 5 {
		t.Fatalf("count after a refusal: %v", r[0].Body)
	}
	r = w.do(command(12, 0, "saslStart", int32(1), "mechanism", "SCRAM-SHA-256", "$db", "admin"))
	if code, _ := r[0].Body.Lookup("code").AsInt64OK(); code != Unauthorized {
		t.Fatalf("the client authenticating itself: %v", r[0].Body)
	}

	var out session.Output
	if err := w.s.FromClient(command(13, wiremessage.MoreToCome, "drop", "customers", "$db", "sluice_demo"), &out); err == nil {
		t.Fatal("a refused unacknowledged drop did not end the session")
	}
	w.write(out.ToServer)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(w.buf); !errors.Is(err, io.EOF) {
		t.Fatalf("the server did not hang up: %v", err)
	}
	if r, err := seed(bsoncore.NewDocumentBuilder().AppendString("count", "customers").AppendString("$db", "sluice_demo").Build()); err != nil {
		t.Fatal(err)
	} else if n, _ := r.Lookup("n").AsInt64OK(); n != 5 {
		t.Fatalf("collection changed: %v", r)
	}
}
