package postgres

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"

	"github.com/sluicedb/sluice/extproc/session"
)

const testPassword = "s3cr3t-broker-pw"

func newBrokeredSession(t *testing.T) *Session {
	t.Helper()
	login := &session.Login{User: "reader", Password: session.Secret(testPassword)}
	return sessionFor(t, session.Target{Name: "demo", Protocol: "postgres", Database: "app", Login: login}, "analysts")
}

// backend decodes what sluice sent the server, as the server would.
func backend(t *testing.T, b []byte) []pgproto3.FrontendMessage {
	t.Helper()
	be := pgproto3.NewBackend(bytes.NewReader(b), nil)
	var msgs []pgproto3.FrontendMessage
	for {
		m, err := be.Receive()
		if err != nil {
			return msgs
		}
		msgs = append(msgs, m)
	}
}

func startBrokered(t *testing.T, s *Session) {
	t.Helper()
	var out session.Output
	start := enc(t, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "whoever", "database": "app", "application_name": "psql"}})
	if err := s.FromClient(start, &out); err != nil {
		t.Fatal(err)
	}
	be := pgproto3.NewBackend(bytes.NewReader(out.ToServer), nil)
	m, err := be.ReceiveStartupMessage()
	if err != nil {
		t.Fatal(err)
	}
	sm := m.(*pgproto3.StartupMessage)
	if sm.Parameters["user"] != "reader" || sm.Parameters["database"] != "app" || sm.Parameters["application_name"] != "psql" {
		t.Fatalf("startup sent to the server: %v", sm.Parameters)
	}
}

func TestBrokeredSCRAM(t *testing.T) {
	s := newBrokeredSession(t)
	startBrokered(t, s)

	// The server side of SCRAM-SHA-256, from the library's server.
	client, _ := scram.SHA256.NewClient("", testPassword, "")
	creds := client.GetStoredCredentials(scram.KeyFactors{Salt: "0123456789abcdef", Iters: 4096})
	srv, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return creds, nil })
	if err != nil {
		t.Fatal(err)
	}
	conv := srv.NewConversation()

	var out session.Output
	if err := s.FromServer(enc(t, &pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}}), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.ToClient) != 0 || !out.Sensitive {
		t.Fatalf("the SASL request must stop at sluice, its answer marked sensitive: %q %v", out.ToClient, out.Sensitive)
	}
	init, ok := backendSASL(t, out.ToServer, "SCRAM-SHA-256")
	if !ok {
		t.Fatal("no SASLInitialResponse")
	}
	serverFirst, err := conv.Step(string(init))
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := s.FromServer(enc(t, &pgproto3.AuthenticationSASLContinue{Data: []byte(serverFirst)}), &out); err != nil {
		t.Fatal(err)
	}
	clientFinal := backendSASLResponse(t, out.ToServer)
	serverFinal, err := conv.Step(clientFinal)
	if err != nil || !conv.Valid() {
		t.Fatalf("the server rejects sluice's proof: %v", err)
	}
	if strings.Contains(string(out.ToServer), testPassword) {
		t.Fatal("password on the wire")
	}
	out.Reset()
	msgs := enc(t, &pgproto3.AuthenticationSASLFinal{Data: []byte(serverFinal)}, &pgproto3.AuthenticationOk{},
		&pgproto3.ParameterStatus{Name: "server_version", Value: "15"}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := s.FromServer(msgs, &out); err != nil {
		t.Fatal(err)
	}
	want := enc(t, &pgproto3.AuthenticationOk{}, &pgproto3.ParameterStatus{Name: "server_version", Value: "15"}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	if !bytes.Equal(out.ToClient, want) || len(out.ToServer) != 0 {
		t.Fatalf("the client should see AuthenticationOk onward only: %q", out.ToClient)
	}
	if s.phase != phaseReady {
		t.Fatal("not ready")
	}
}

func backendSASL(t *testing.T, b []byte, mech string) ([]byte, bool) {
	t.Helper()
	// SASLInitialResponse and SASLResponse share the 'p' type: decode by hand.
	m := &pgproto3.SASLInitialResponse{}
	if len(b) < 5 || b[0] != 'p' || m.Decode(b[5:]) != nil || m.AuthMechanism != mech {
		return nil, false
	}
	return m.Data, true
}

func backendSASLResponse(t *testing.T, b []byte) string {
	t.Helper()
	m := &pgproto3.SASLResponse{}
	if len(b) < 5 || b[0] != 'p' || m.Decode(b[5:]) != nil {
		t.Fatalf("no SASLResponse in %q", b)
	}
	return string(m.Data)
}

func TestBrokeredSCRAMBadServerSignature(t *testing.T) {
	s := newBrokeredSession(t)
	startBrokered(t, s)
	// A server that does not know the password cannot sign the exchange.
	client, _ := scram.SHA256.NewClient("", "another password", "")
	creds := client.GetStoredCredentials(scram.KeyFactors{Salt: "0123456789abcdef", Iters: 4096})
	srv, _ := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return creds, nil })
	conv := srv.NewConversation()
	var out session.Output
	_ = s.FromServer(enc(t, &pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}}), &out)
	init, _ := backendSASL(t, out.ToServer, "SCRAM-SHA-256")
	first, _ := conv.Step(string(init))
	out.Reset()
	_ = s.FromServer(enc(t, &pgproto3.AuthenticationSASLContinue{Data: []byte(first)}), &out)
	// The impostor server accepts whatever it got and claims success with a
	// final message that cannot verify.
	out.Reset()
	err := s.FromServer(enc(t, &pgproto3.AuthenticationSASLFinal{Data: []byte("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")}), &out)
	if err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("an invalid server signature must end the session: %v", err)
	}
	if e := errorIn(t, out.ToClient); e.Severity != "FATAL" {
		t.Fatalf("client error: %+v", e)
	}
	// And AuthenticationOk without SASLFinal is refused as well.
	s = newBrokeredSession(t)
	startBrokered(t, s)
	out.Reset()
	_ = s.FromServer(enc(t, &pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}}), &out)
	out.Reset()
	if err := s.FromServer(enc(t, &pgproto3.AuthenticationOk{}), &out); err == nil {
		t.Fatal("AuthenticationOk without the server's proof must be refused")
	}
}

func TestBrokeredMD5AndCleartext(t *testing.T) {
	s := newBrokeredSession(t)
	startBrokered(t, s)
	var out session.Output
	salt := [4]byte{1, 2, 3, 4}
	if err := s.FromServer(enc(t, &pgproto3.AuthenticationMD5Password{Salt: salt}), &out); err != nil {
		t.Fatal(err)
	}
	msgs := backend(t, out.ToServer)
	pm, ok := msgs[0].(*pgproto3.PasswordMessage)
	if !ok {
		t.Fatalf("sent %T", msgs[0])
	}
	inner := md5.Sum([]byte(testPassword + "reader"))
	outer := md5.Sum(append([]byte(hex.EncodeToString(inner[:])), salt[:]...))
	if pm.Password != "md5"+hex.EncodeToString(outer[:]) {
		t.Fatalf("md5 response %q", pm.Password)
	}

	s = newBrokeredSession(t)
	startBrokered(t, s)
	out.Reset()
	err := s.FromServer(enc(t, &pgproto3.AuthenticationCleartextPassword{}), &out)
	if err == nil || !strings.Contains(err.Error(), "cleartext") {
		t.Fatalf("cleartext must be refused: %v", err)
	}
	if strings.Contains(string(out.ToServer), testPassword) {
		t.Fatal("password sent in clear")
	}
}

func TestBrokeredClientMayNotAuthenticate(t *testing.T) {
	s := newBrokeredSession(t)
	startBrokered(t, s)
	var out session.Output
	err := s.FromClient(enc(t, &pgproto3.PasswordMessage{Password: "guess"}), &out)
	if err == nil || !strings.Contains(err.Error(), "no password") {
		t.Fatalf("a client password during a brokered login: %v", err)
	}
}
