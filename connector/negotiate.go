package connector

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"net"
	"time"
)

// Codes of PostgreSQL's untyped first messages.
const (
	codeSSLRequest    = 80877103
	codeGSSENCRequest = 80877104
)

// negotiate answers a PostgreSQL client's SSLRequest and GSSENCRequest at
// the connector. No negotiation crosses the tunnel: the gateway must read
// the protocol in plaintext, and it cannot be the first to speak (Envoy
// drops a reply sent toward the client before the database has sent a
// byte). It returns the connection to copy from (TLS when the client took
// local TLS) and the bytes read of the client's first other message.
func (c *Connector) negotiate(conn net.Conn) (net.Conn, []byte, error) {
	for range 3 { // libpq sends at most a GSSENCRequest, then an SSLRequest
		var hdr [8]byte
		n, err := io.ReadFull(conn, hdr[:])
		if err != nil {
			return conn, hdr[:n], nil // the copy sees the client's EOF
		}
		if hdr[0] == tlsHandshakeRecord && c.cfg.LocalTLS != nil {
			// PostgreSQL 17's sslnegotiation=direct: a TLS hello with no
			// SSLRequest before it.
			tc := tls.Server(&prefixConn{Conn: conn, prefix: hdr[:]}, c.cfg.LocalTLS)
			if err := handshake(conn, tc); err != nil {
				return conn, nil, err
			}
			conn = tc
			continue
		}
		if binary.BigEndian.Uint32(hdr[:4]) != 8 {
			return conn, hdr[:], nil
		}
		switch binary.BigEndian.Uint32(hdr[4:]) {
		case codeGSSENCRequest:
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return conn, nil, fmt.Errorf("cannot answer GSSENCRequest: %w", err)
			}
		case codeSSLRequest:
			if c.cfg.LocalTLS == nil {
				if _, err := conn.Write([]byte{'N'}); err != nil {
					return conn, nil, fmt.Errorf("cannot answer SSLRequest: %w", err)
				}
				continue
			}
			if _, err := conn.Write([]byte{'S'}); err != nil {
				return conn, nil, fmt.Errorf("cannot answer SSLRequest: %w", err)
			}
			tc := tls.Server(conn, c.cfg.LocalTLS)
			if err := handshake(conn, tc); err != nil {
				return conn, nil, err
			}
			conn = tc
		default:
			return conn, hdr[:], nil
		}
	}
	return conn, nil, fmt.Errorf("the client sent too many SSL/GSS requests")
}

// tlsHandshakeRecord is the first byte of a TLS ClientHello; no PostgreSQL
// message length starts with it.
const tlsHandshakeRecord = 0x16

func handshake(raw net.Conn, tc *tls.Conn) error {
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("local TLS handshake with the client: %w", err)
	}
	_ = raw.SetDeadline(time.Time{})
	return nil
}

// prefixConn reads prefix before the connection's own bytes.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// EphemeralTLS is a local TLS configuration with a self-signed certificate
// made now, for clients that require TLS but do not verify the server
// (libpq's sslmode=require). A client that verifies needs a certificate it
// trusts: see LocalTLS.
func EphemeralTLS() (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("cannot make a key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, fmt.Errorf("cannot make a serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "sluice connect"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("cannot make a certificate: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, nil
}
