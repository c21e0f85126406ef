// Package connector implements `sluice connect`: a local TCP port for an
// agent's stock database client, each connection carried to the gateway in
// an HTTP/2 CONNECT tunnel over TLS with the agent's bearer token.
//
// The connector holds no policy: it only moves bytes, so a client that skips
// it and speaks to Envoy directly gets the same enforcement. It does two
// things a database client on its default settings needs: it answers a
// PostgreSQL client's SSLRequest / GSSENCRequest itself (with local TLS, or
// 'N'), so no negotiation crosses the tunnel; and when the gateway refuses
// a tunnel, it tells the client why in the client's own protocol.
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

// ProtocolHeader is the response header in which the gateway names the
// target's wire protocol ("postgres" or "mysql").
const ProtocolHeader = "x-sluice-protocol"

// Config configures a Connector.
type Config struct {
	Gateway string // host:port of Envoy's tunnel listener
	Target  string // target name, sent as the CONNECT authority
	// Protocol is the target's protocol, "postgres" or "mysql"; empty: as
	// the gateway names it, or, for a tunnel refused before it could, as
	// the client behaves (a PostgreSQL client speaks first).
	Protocol string
	CAFile   string // CA that signed the gateway certificate; empty: system roots
	// LocalTLS answers a PostgreSQL client's SSLRequest with TLS ending at
	// the connector (nil: 'N', and the client goes on in plaintext to the
	// local port). The tunnel to the gateway is TLS either way.
	LocalTLS *tls.Config
	Token    TokenSource
	Logger   *slog.Logger
}

// Connector accepts local connections and tunnels them.
type Connector struct {
	cfg Config
	tr  *http2.Transport
	log *slog.Logger

	mu       sync.Mutex
	protocol string // as the gateway last named it
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
	Status   int
	Body     string
	Protocol string // the target's, if the gateway named it
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("gateway refused the tunnel: %d %s: %s", e.Status, http.StatusText(e.Status), e.Body)
}

// Tunnel is an open tunnel to the target.
type Tunnel struct {
	w *io.PipeWriter
	r io.ReadCloser
	// Protocol is the target's protocol as the gateway named it (empty if
	// it did not).
	Protocol string
}

// Dial opens one tunnel to the target. The bytes are the database's
// protocol as is: a PostgreSQL SSLRequest sent on it reaches the gateway.
func (c *Connector) Dial(ctx context.Context) (*Tunnel, error) {
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
		return nil, fmt.Errorf("cannot reach the gateway at %s: %w", c.cfg.Gateway, err)
	}
	proto := resp.Header.Get(ProtocolHeader)
	if proto != "" {
		c.mu.Lock()
		c.protocol = proto
		c.mu.Unlock()
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		pw.Close()
		return nil, &RefusedError{Status: resp.StatusCode, Body: strings.TrimSpace(string(b)), Protocol: proto}
	}
	return &Tunnel{w: pw, r: resp.Body, Protocol: proto}, nil
}

func (t *Tunnel) Read(p []byte) (int, error)  { return t.r.Read(p) }
func (t *Tunnel) Write(p []byte) (int, error) { return t.w.Write(p) }

// CloseWrite half-closes the tunnel: the database sees the client's EOF.
func (t *Tunnel) CloseWrite() error { return t.w.Close() }

// Close ends the tunnel both ways.
func (t *Tunnel) Close() error {
	t.w.Close()
	return t.r.Close()
}

// protocolOf is the target's protocol: configured, named by the gateway
// now or before, or "" when unknown.
func (c *Connector) protocolOf(named string) string {
	if c.cfg.Protocol != "" {
		return c.cfg.Protocol
	}
	if named != "" {
		return named
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.protocol
}

func (c *Connector) handle(ctx context.Context, conn net.Conn) error {
	defer func() { conn.Close() }()
	tun, err := c.Dial(ctx)
	if err != nil {
		var re *RefusedError
		named := ""
		if errors.As(err, &re) {
			named = re.Protocol
		}
		c.refuse(conn, c.protocolOf(named), err)
		return err
	}
	defer tun.Close()
	var first []byte // the client's first message, read while negotiating
	if c.protocolOf(tun.Protocol) == "postgres" {
		if conn, first, err = c.negotiate(conn); err != nil {
			return err
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(conn, tun)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	if _, err = tun.Write(first); err == nil {
		_, err = io.Copy(tun, conn)
	}
	_ = tun.CloseWrite()
	<-done
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("cannot copy to tunnel: %w", err)
	}
	return nil
}
