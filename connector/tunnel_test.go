package connector

import (
	"context"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// gateway is an HTTP/2 server standing in for Envoy's CONNECT listener in
// these unit tests (the e2e tests use the real Envoy): handler answers each
// tunnel.
func gateway(t *testing.T, handler http.HandlerFunc) *Connector {
	t.Helper()
	srv := httptest.NewUnstartedServer(handler)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Gateway: srv.Listener.Addr().String(), Target: "db", CAFile: ca, Token: StaticToken("tok")})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// carry runs handle for one client connection and returns the client's end
// and a channel that yields handle's result.
func carry(t *testing.T, c *Connector) (net.Conn, <-chan error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		done <- c.handle(context.Background(), conn)
	}()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	return client, done
}

// TestTunnelCarriesBothWaysAndHalfCloses: the client's bytes reach the
// gateway and its answer comes back; the client's close ends the request
// body, and the gateway's last bytes still reach the client.
func TestTunnelCarriesBothWaysAndHalfCloses(t *testing.T) {
	c := gateway(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect || r.Host != "db" || r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "bad tunnel request", http.StatusBadRequest)
			return
		}
		w.Header().Set(ProtocolHeader, "mysql") // no negotiation: bytes as they come
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		buf := make([]byte, 64)
		var all []byte
		for {
			n, err := r.Body.Read(buf)
			all = append(all, buf[:n]...)
			if n > 0 {
				_, _ = w.Write([]byte(strings.ToUpper(string(buf[:n]))))
				w.(http.Flusher).Flush()
			}
			if err != nil {
				break
			}
		}
		_, _ = w.Write([]byte("|got " + string(all))) // after the client's EOF
	})
	client, done := carry(t, c)
	if _, err := client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "HELLO" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	if _, err := client.Write([]byte(" again")); err != nil {
		t.Fatal(err)
	}
	client.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(client)
	if err != nil || string(rest) != " AGAIN|got hello again" {
		t.Fatalf("after the client's close: %q, %v", rest, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("handle: %v", err)
	}
}

// TestTunnelRefusedDoesNotHang: a refused tunnel is told to the client in
// its protocol at once, while the transport's read of the request body
// still waits at the gate.
func TestTunnelRefusedDoesNotHang(t *testing.T) {
	c := gateway(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(ProtocolHeader, "postgres")
		http.Error(w, "sluice: connect refused by policy no-night-work", http.StatusForbidden)
	})
	client, done := carry(t, c)
	if _, err := client.Write(startup()); err != nil {
		t.Fatal(err)
	}
	m, err := pgproto3.NewFrontend(client, client).Receive()
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := m.(*pgproto3.ErrorResponse); !ok || !strings.Contains(e.Message, "no-night-work") {
		t.Fatalf("got %#v", m)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a refused tunnel reported no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handle did not return after the refusal")
	}
}
