package connector

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func request(code uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), code)
}

func startup() []byte {
	b, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "u"}}).Encode(nil)
	return b
}

// negotiated runs negotiate on one end of a pipe while client drives the
// other, and returns what negotiate read of the first message after it
// and whether the connection it returned is TLS.
func negotiated(t *testing.T, c *Connector, client func(net.Conn) net.Conn) (first []byte, isTLS bool) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	type result struct {
		conn  net.Conn
		first []byte
		err   error
	}
	done := make(chan result, 1)
	go func() {
		conn, first, err := c.negotiate(b)
		done <- result{conn, first, err}
	}()
	cc := client(a)
	go func() { _, _ = cc.Write(startup()) }()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	_, isTLS = r.conn.(*tls.Conn)
	return r.first, isTLS
}

func readByte(t *testing.T, r io.Reader) byte {
	t.Helper()
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		t.Fatal(err)
	}
	return b[0]
}

func localTLS(t *testing.T) *tls.Config {
	t.Helper()
	cfg, err := EphemeralTLS()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestNegotiate(t *testing.T) {
	withTLS := &Connector{cfg: Config{LocalTLS: localTLS(t)}}
	without := &Connector{}
	tlsClient := func(conn net.Conn) net.Conn {
		tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		return tc
	}
	for name, tc := range map[string]struct {
		c       *Connector
		client  func(net.Conn) net.Conn
		wantTLS bool
	}{
		"no request": {without, func(conn net.Conn) net.Conn { return conn }, false},
		"SSL, no local TLS: N": {without, func(conn net.Conn) net.Conn {
			conn.Write(request(codeSSLRequest))
			if b := readByte(t, conn); b != 'N' {
				t.Errorf("SSLRequest answered %q", b)
			}
			return conn
		}, false},
		"SSL, local TLS: S and a handshake": {withTLS, func(conn net.Conn) net.Conn {
			conn.Write(request(codeSSLRequest))
			if b := readByte(t, conn); b != 'S' {
				t.Errorf("SSLRequest answered %q", b)
			}
			return tlsClient(conn)
		}, true},
		"GSS then SSL": {withTLS, func(conn net.Conn) net.Conn {
			conn.Write(request(codeGSSENCRequest))
			if b := readByte(t, conn); b != 'N' {
				t.Errorf("GSSENCRequest answered %q", b)
			}
			conn.Write(request(codeSSLRequest))
			if b := readByte(t, conn); b != 'S' {
				t.Errorf("SSLRequest answered %q", b)
			}
			return tlsClient(conn)
		}, true},
		"direct TLS (PostgreSQL 17 sslnegotiation=direct)": {withTLS, tlsClient, true},
	} {
		t.Run(name, func(t *testing.T) {
			first, isTLS := negotiated(t, tc.c, tc.client)
			if isTLS != tc.wantTLS {
				t.Errorf("TLS: got %v, want %v", isTLS, tc.wantTLS)
			}
			if want := startup()[:8]; string(first) != string(want) {
				t.Errorf("first bytes after negotiation: %x, want %x", first, want)
			}
		})
	}
}

func TestExplain(t *testing.T) {
	for _, tc := range []struct {
		err   error
		want  string
		myErr uint16
	}{
		{&RefusedError{Status: 401, Body: "Jwt is expired"}, "did not accept the agent's token: Jwt is expired", 1045},
		{&RefusedError{Status: 403, Body: "sluice: CONNECT on the database is not permitted"}, "refused the connection: CONNECT on", 1045},
		{&RefusedError{Status: 404, Body: `unknown target "x"`}, `unknown target "x"`, 1049},
		{&RefusedError{Status: 503, Body: "upstream connect error or disconnect/reset before headers"}, "cannot reach the database: upstream connect error", 1105},
		{&RefusedError{Status: 502, Body: "sluice: the gateway cannot reach its policy service (sluice serve)"}, "sluice connect: the gateway cannot reach its policy service", 1105},
		{&RefusedError{Status: 500}, "cannot reach its policy service (sluice serve), so it refuses every connection: 500 Internal Server Error", 1105},
		{errors.New("dial tcp: connection refused"), "connection refused", 1105},
	} {
		got := explain(tc.err)
		if !strings.Contains(got.msg, tc.want) || got.myErr != tc.myErr || !strings.HasPrefix(got.msg, "sluice connect: ") {
			t.Errorf("%v: got %+v, want %q, %d", tc.err, got, tc.want, tc.myErr)
		}
	}
}

func TestRefuseMySQL(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	// Protocol unknown and a silent client: a MySQL client waiting for
	// the greeting gets an ERR packet in its place.
	go func() {
		(&Connector{}).refuse(b, "", &RefusedError{Status: 404, Body: `unknown target "x"`})
		b.Close()
	}()
	p, err := io.ReadAll(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(p) < 7 || int(p[0])|int(p[1])<<8|int(p[2])<<16 != len(p)-4 || p[3] != 0 || p[4] != 0xff {
		t.Fatalf("not one ERR packet: %q", p)
	}
	if code := binary.LittleEndian.Uint16(p[5:]); code != 1049 || !strings.Contains(string(p[7:]), `unknown target "x"`) {
		t.Fatalf("ERR %d %q", code, p[7:])
	}
}

func TestRefusePostgres(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		(&Connector{}).refuse(b, "", &RefusedError{Status: 503, Body: "upstream connect error"})
		b.Close()
	}()
	// libpq's default: SSLRequest first (answered 'N' without local TLS),
	// then the startup message; then the FATAL.
	a.Write(request(codeSSLRequest))
	if c := readByte(t, a); c != 'N' {
		t.Fatalf("SSLRequest answered %q", c)
	}
	a.Write(startup())
	fe := pgproto3.NewFrontend(a, a)
	m, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	e, ok := m.(*pgproto3.ErrorResponse)
	if !ok || e.Severity != "FATAL" || e.Code != "08006" || !strings.Contains(e.Message, "cannot reach the database") {
		t.Fatalf("got %#v", m)
	}
}
