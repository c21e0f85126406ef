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
	"bytes"
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
	pr, pw := io.Pipe()
	body, proto, err := c.open(ctx, pr)
	if err != nil {
		pw.Close()
		return nil, err
	}
	return &Tunnel{w: pw, r: body, Protocol: proto}, nil
}

// open sends the CONNECT request with body as the bytes toward the target
// and returns the response's body and the protocol the gateway named.
func (c *Connector) open(ctx context.Context, body io.Reader) (io.ReadCloser, string, error) {
	tok, err := c.cfg.Token()
	if err != nil {
		return nil, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodConnect, "https://"+c.cfg.Gateway, body)
	if err != nil {
		return nil, "", fmt.Errorf("cannot build CONNECT request: %w", err)
	}
	req.Host = c.cfg.Target
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.tr.RoundTrip(req)
	if err != nil {
		return nil, "", fmt.Errorf("cannot reach the gateway at %s: %w", c.cfg.Gateway, err)
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
		return nil, "", &RefusedError{Status: resp.StatusCode, Body: strings.TrimSpace(string(b)), Protocol: proto}
	}
	return resp.Body, proto, nil
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

// handle carries one client connection. The HTTP/2 transport reads the
// request body straight from the client's connection (through a gate
// opened once the PostgreSQL negotiation is done): no pipe and no goroutine
// of ours stand between the client's bytes and the tunnel.
func (c *Connector) handle(ctx context.Context, conn net.Conn) error {
	defer func() { conn.Close() }()
	up := &clientBody{open: make(chan struct{}), done: make(chan struct{})}
	defer up.release(eofReader{}) // a tunnel refused or failed: the transport's read ends
	resp, proto, err := c.open(ctx, up)
	if err != nil {
		var re *RefusedError
		named := ""
		if errors.As(err, &re) {
			named = re.Protocol
		}
		c.refuse(conn, c.protocolOf(named), err)
		return err
	}
	defer resp.Close()
	var first []byte // the client's first message, read while negotiating
	if c.protocolOf(proto) == "postgres" {
		if conn, first, err = c.negotiate(conn); err != nil {
			return err
		}
	}
	up.release(io.MultiReader(bytes.NewReader(first), conn))
	_, err = io.Copy(conn, resp)
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	// The database is done; the client's last bytes (up to its own close)
	// are still read, so it sees our last bytes rather than a reset.
	select {
	case <-up.done:
	case <-ctx.Done():
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("cannot copy from tunnel: %w", err)
	}
	return nil
}

// clientBody is a tunnel's request body: the client's connection once
// released. done closes when the transport is through with it (a read
// failed or ended, or it closed the body).
type clientBody struct {
	open     chan struct{}
	r        io.Reader
	released sync.Once
	done     chan struct{}
	finished sync.Once
}

// release lets reads through to r (only the first call counts).
func (b *clientBody) release(r io.Reader) {
	b.released.Do(func() { b.r = r; close(b.open) })
}

func (b *clientBody) Read(p []byte) (int, error) {
	<-b.open
	n, err := b.r.Read(p)
	if err != nil {
		b.finish()
	}
	return n, err
}

// Close is the transport's (done with the body, or the stream aborted): a
// read still waiting at the gate ends; the client's connection is not
// closed here.
func (b *clientBody) Close() error {
	b.release(eofReader{})
	b.finish()
	return nil
}

func (b *clientBody) finish() { b.finished.Do(func() { close(b.done) }) }

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
