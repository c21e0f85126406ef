// Package connector implements `sluice connect`: a local TCP port for an
// agent's stock database client, each connection carried to the gateway in
// an HTTP/2 CONNECT tunnel over TLS with the agent's bearer token.
//
// The connector holds no policy: it only moves bytes, so a client that skips
// it and speaks to Envoy directly gets the same enforcement. When the gateway
// refuses a tunnel, a PostgreSQL client is told why in its own protocol.
package connector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgproto3"
	"golang.org/x/net/http2"
)

// TokenSource returns the bearer token for a new tunnel; it is called per
// connection so a rotated token file is picked up.
type TokenSource func() (string, error)

// FileToken reads the token from a file on each call.
func FileToken(path string) TokenSource {
	return func() (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("cannot read token file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
}

// StaticToken always returns tok.
func StaticToken(tok string) TokenSource { return func() (string, error) { return tok, nil } }

// Config configures a Connector.
type Config struct {
	Gateway  string // host:port of Envoy's tunnel listener
	Target   string // target name, sent as the CONNECT authority
	Protocol string // "postgres" or "mysql": how refusals are shown to clients
	CAFile   string // CA that signed the gateway certificate; empty: system roots
	Token    TokenSource
	Logger   *slog.Logger
}

// Connector accepts local connections and tunnels them.
type Connector struct {
	cfg Config
	tr  *http2.Transport
	log *slog.Logger
}

// New returns a Connector.
func New(cfg Config) (*Connector, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Token == nil {
		return nil, errors.New("no token source")
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("cannot read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificates in %s", cfg.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	if host, _, err := net.SplitHostPort(cfg.Gateway); err == nil {
		tlsCfg.ServerName = host
	}
	return &Connector{cfg: cfg, tr: &http2.Transport{TLSClientConfig: tlsCfg}, log: cfg.Logger}, nil
}

// Serve accepts connections on l until ctx ends.
func (c *Connector) Serve(ctx context.Context, l net.Listener) error {
	go func() { <-ctx.Done(); l.Close() }()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("cannot accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.handle(ctx, conn); err != nil {
				c.log.Warn("tunnel ended", "err", err)
			}
		}()
	}
}

// RefusedError is a tunnel the gateway did not open.
type RefusedError struct {
	Status int
	Body   string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("gateway refused the tunnel: %d %s: %s", e.Status, http.StatusText(e.Status), e.Body)
}

// Dial opens one tunnel to the target and returns it as a connection.
func (c *Connector) Dial(ctx context.Context) (io.ReadWriteCloser, error) {
	tok, err := c.cfg.Token()
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodConnect, "https://"+c.cfg.Gateway, pr)
	if err != nil {
		return nil, fmt.Errorf("cannot build CONNECT request: %w", err)
	}
	req.Host = c.cfg.Target
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.tr.RoundTrip(req)
	if err != nil {
		pw.Close()
		return nil, fmt.Errorf("cannot open tunnel to %s: %w", c.cfg.Gateway, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		pw.Close()
		return nil, &RefusedError{Status: resp.StatusCode, Body: strings.TrimSpace(string(b))}
	}
	return &tunnelConn{w: pw, r: resp.Body}, nil
}

type tunnelConn struct {
	w *io.PipeWriter
	r io.ReadCloser
}

func (t *tunnelConn) Read(p []byte) (int, error)  { return t.r.Read(p) }
func (t *tunnelConn) Write(p []byte) (int, error) { return t.w.Write(p) }

// CloseWrite half-closes the tunnel: the database sees the client's EOF.
func (t *tunnelConn) CloseWrite() error { return t.w.Close() }

func (t *tunnelConn) Close() error {
	t.w.Close()
	return t.r.Close()
}

func (c *Connector) handle(ctx context.Context, conn net.Conn) error {
	defer conn.Close()
	tun, err := c.Dial(ctx)
	if err != nil {
		c.refuse(conn, err)
		return err
	}
	defer tun.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(conn, tun)
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	_, err = io.Copy(tun, conn)
	_ = tun.(*tunnelConn).CloseWrite()
	<-done
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("cannot copy to tunnel: %w", err)
	}
	return nil
}

// refuse tells a PostgreSQL client why its connection failed, in its own
// protocol, so psql and drivers print the gateway's reason.
func (c *Connector) refuse(conn net.Conn, cause error) {
	if c.cfg.Protocol != "postgres" {
		return
	}
	be := pgproto3.NewBackend(conn, conn)
	for range 3 {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return
		}
		switch msg.(type) {
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return
			}
			continue
		case *pgproto3.StartupMessage:
			be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "28000",
				Message: "sluice connect: " + cause.Error()})
			_ = be.Flush()
		}
		return
	}
}
