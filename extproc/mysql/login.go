package mysql

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"fmt"

	"github.com/sluicedb/sluice/extproc/session"
)

// Authentication plugins sluice can perform for a brokered login.
const (
	pluginNative      = "mysql_native_password"
	pluginCachingSHA2 = "caching_sha2_password"
)

// brokeredLogin performs the database authentication for the agent: sluice
// rewrites the client's handshake response to the target's user with a
// proof computed from the server's scramble, answers the server's further
// requests itself (auth switch, caching_sha2 full authentication), and gives
// the client only the final OK or ERR.
type brokeredLogin struct {
	login    *session.Login
	plugin   string
	scramble []byte
	// clientSeq is the sequence id the client expects of the server's final
	// OK or ERR: one past its handshake response, however many packets
	// sluice and the server exchanged in between.
	clientSeq  byte
	wantPubKey bool // caching_sha2: asked the server for its RSA key
}

// greetingAuth reads the auth plugin data and plugin name of a protocol 10
// greeting; pos is the offset of the capability flags' lower half.
func greetingAuth(b []byte, pos int) (scramble []byte, plugin string) {
	part1 := b[pos-9 : pos-1]
	scramble = append(scramble, part1...)
	if len(b) < pos+18 {
		return scramble, pluginNative
	}
	authLen := int(b[pos+7])
	rest := b[pos+18:]
	n := max(13, authLen-8)
	if len(rest) < n {
		return scramble, pluginNative
	}
	scramble = append(scramble, bytes.TrimRight(rest[:n], "\x00")...)
	plugin = pluginNative
	if p, _, ok := cstring(rest[n:]); ok && p != "" {
		plugin = p
	}
	return scramble, plugin
}

// handshake is a client's decoded HandshakeResponse41.
type handshake struct {
	caps    uint32
	head    []byte // max packet size, charset, filler: 28 bytes after caps
	user    string
	db      string
	plugin  string
	attrs   []byte // connection attributes, as sent
	hasAttr bool
}

const capConnectAttrs = 1 << 20

func parseHandshake(b []byte) (*handshake, error) {
	if len(b) < 32 {
		return nil, &ProtocolError{"short handshake response"}
	}
	h := &handshake{caps: binary.LittleEndian.Uint32(b), head: b[4:32]}
	bad := &ProtocolError{"malformed handshake response"}
	var ok bool
	rest := b[32:]
	if h.user, rest, ok = cstring(rest); !ok {
		return nil, bad
	}
	switch {
	case h.caps&capLenencAuthData != 0:
		n, k, _, ok := lenenc(rest)
		if !ok || uint64(len(rest)) < uint64(k)+n {
			return nil, bad
		}
		rest = rest[k+int(n):]
	case h.caps&capSecureConn != 0:
		if len(rest) < 1 || len(rest) < 1+int(rest[0]) {
			return nil, bad
		}
		rest = rest[1+int(rest[0]):]
	default:
		if _, rest, ok = cstring(rest); !ok {
			return nil, bad
		}
	}
	if h.caps&capConnectWithDB != 0 {
		if h.db, rest, ok = cstring(rest); !ok {
			return nil, bad
		}
	}
	if h.caps&capPluginAuth != 0 && len(rest) > 0 {
		if h.plugin, rest, ok = cstring(rest); !ok {
			return nil, bad
		}
	}
	if h.caps&capConnectAttrs != 0 && len(rest) > 0 {
		h.attrs, h.hasAttr = rest, true
	}
	return h, nil
}

// brokeredResponse is the handshake response sluice sends in the client's
// place: the brokered user and a proof for the server's scramble. The
// client's database, attributes and (handshake-only) capabilities are kept.
func (l *brokeredLogin) brokeredResponse(h *handshake, caps uint32) ([]byte, error) {
	proof, err := l.proof(l.plugin)
	if err != nil {
		return nil, err
	}
	caps |= capPluginAuth | capSecureConn | capLenencAuthData
	if !h.hasAttr {
		caps &^= capConnectAttrs
	}
	b := binary.LittleEndian.AppendUint32(nil, caps)
	b = append(b, h.head...)
	clear(b[len(b)-4:]) // MariaDB's extended capabilities: none
	b = append(append(b, l.login.User...), 0)
	b = append(appendLenenc(b, uint64(len(proof))), proof...)
	if caps&capConnectWithDB != 0 {
		b = append(append(b, h.db...), 0)
	}
	b = append(append(b, l.plugin...), 0)
	return append(b, h.attrs...), nil
}

// proof answers the scramble for a plugin.
func (l *brokeredLogin) proof(plugin string) ([]byte, error) {
	pw := []byte(l.login.Password.Reveal())
	switch plugin {
	case pluginNative:
		return nativeProof(pw, l.scramble), nil
	case pluginCachingSHA2:
		return cachingSHA2Proof(pw, l.scramble), nil
	}
	return nil, &ProtocolError{fmt.Sprintf("the database asks for authentication plugin %q; sluice logs in with %s or %s", plugin, pluginNative, pluginCachingSHA2)}
}

// nativeProof is SHA1(pw) XOR SHA1(scramble || SHA1(SHA1(pw))).
func nativeProof(pw, scramble []byte) []byte {
	if len(pw) == 0 {
		return nil
	}
	if len(scramble) > 20 {
		scramble = scramble[:20]
	}
	h1 := sha1.Sum(pw)
	h2 := sha1.Sum(h1[:])
	h := sha1.New()
	h.Write(scramble)
	h.Write(h2[:])
	p := h.Sum(nil)
	for i := range p {
		p[i] ^= h1[i]
	}
	return p
}

// cachingSHA2Proof is SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) || scramble).
func cachingSHA2Proof(pw, scramble []byte) []byte {
	if len(pw) == 0 {
		return nil
	}
	if len(scramble) > 20 {
		scramble = scramble[:20]
	}
	h1 := sha256.Sum256(pw)
	h2 := sha256.Sum256(h1[:])
	h := sha256.New()
	h.Write(h2[:])
	h.Write(scramble)
	p := h.Sum(nil)
	for i := range p {
		p[i] ^= h1[i]
	}
	return p
}

// serverAuth handles one server packet after the brokered handshake
// response. It returns the packet for the client (nil while the exchange
// goes on) and appends sluice's answers to the server.
func (l *brokeredLogin) serverAuth(p phys, out *session.Output) (toClient []byte, done bool, err error) {
	if p.cont || p.more || len(p.payload) == 0 {
		return nil, false, &ProtocolError{"malformed authentication packet from the server"}
	}
	b := p.payload
	reply := func(payload []byte) {
		out.ToServer, _ = appendPacket(out.ToServer, payload, p.seq+1)
		out.Sensitive = true
	}
	switch b[0] {
	case 0x00, 0xFF: // OK or ERR: the client sees it as the answer to its handshake
		toClient, _ = appendPacket(nil, b, l.clientSeq)
		return toClient, b[0] == 0x00, nil
	case 0xFE: // auth switch request: plugin name and a new scramble
		plugin, data, ok := cstring(b[1:])
		if !ok {
			return nil, false, &ProtocolError{"the database asks for the pre-4.1 password protocol, which sluice does not perform"}
		}
		l.plugin, l.scramble = plugin, bytes.TrimRight(data, "\x00")
		proof, err := l.proof(plugin)
		if err != nil {
			return nil, false, err
		}
		reply(proof)
		return nil, false, nil
	case 0x01: // more data for the current plugin
		if l.plugin != pluginCachingSHA2 {
			return nil, false, &ProtocolError{fmt.Sprintf("unexpected auth data for plugin %q", l.plugin)}
		}
		switch {
		case l.wantPubKey:
			enc, err := l.rsaPassword(b[1:])
			if err != nil {
				return nil, false, err
			}
			l.wantPubKey = false
			reply(enc)
		case len(b) == 2 && b[1] == 0x03: // fast authentication succeeded: OK follows
		case len(b) == 2 && b[1] == 0x04:
			// Full authentication needs the password itself, which must not
			// cross an unencrypted link: encrypt it with the server's RSA key.
			l.wantPubKey = true
			reply([]byte{0x02})
		default:
			return nil, false, &ProtocolError{"unexpected caching_sha2_password data from the server"}
		}
		return nil, false, nil
	}
	return nil, false, &ProtocolError{fmt.Sprintf("unexpected authentication packet 0x%02x from the server", b[0])}
}

// rsaPassword encrypts the NUL-terminated password, XORed with the scramble,
// with the server's public key (RSA-OAEP, SHA-1), as caching_sha2 requires.
func (l *brokeredLogin) rsaPassword(pemKey []byte) ([]byte, error) {
	blk, _ := pem.Decode(pemKey)
	if blk == nil {
		return nil, &ProtocolError{"the database sent no PEM public key"}
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, &ProtocolError{fmt.Sprintf("cannot read the database's public key: %v", err)}
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, &ProtocolError{"the database's public key is not RSA"}
	}
	if len(l.scramble) == 0 {
		return nil, &ProtocolError{"no scramble for full authentication"}
	}
	plain := append([]byte(l.login.Password.Reveal()), 0)
	for i := range plain {
		plain[i] ^= l.scramble[i%len(l.scramble)]
	}
	enc, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, plain, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot encrypt the password: %w", err)
	}
	return enc, nil
}
