package mysql

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/sluicedb/sluice/extproc/session"
)

const testPassword = "s3cr3t-broker-pw"

var testScramble = []byte("abcdefghijklmnopqrst") // 20 bytes

// greetingPacket is a MariaDB-style protocol 10 greeting offering plugin.
func greetingPacket(plugin string) []byte {
	b := []byte{10}
	b = append(b, "10.11.6-MariaDB\x00"...)
	b = binary.LittleEndian.AppendUint32(b, 42)
	b = append(b, testScramble[:8]...)
	b = append(b, 0)
	caps := uint32(capProtocol41 | capSecureConn | capPluginAuth | capLenencAuthData | capConnectWithDB | capConnectAttrs | capDeprecateEOF)
	b = binary.LittleEndian.AppendUint16(b, uint16(caps))
	b = append(b, 45)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, uint16(caps>>16))
	b = append(b, 21)
	b = append(b, make([]byte, 10)...)
	b = append(b, testScramble[8:]...)
	b = append(b, 0)
	b = append(b, plugin...)
	b = append(b, 0)
	p, _ := appendPacket(nil, b, 0)
	return p
}

// clientHandshake is what a client sends with no password.
func clientHandshake(user, db string) []byte {
	caps := uint32(capProtocol41 | capSecureConn | capPluginAuth | capLenencAuthData | capConnectWithDB | capConnectAttrs | capDeprecateEOF)
	b := binary.LittleEndian.AppendUint32(nil, caps)
	b = binary.LittleEndian.AppendUint32(b, 1<<24)
	b = append(b, 45)
	b = append(b, make([]byte, 23)...)
	b = append(append(b, user...), 0)
	b = append(b, 0) // empty auth response
	b = append(append(b, db...), 0)
	b = append(append(b, pluginNative...), 0)
	attrs := []byte{3, 'k', '1', 'v'}
	b = append(appendLenenc(b, uint64(len(attrs))), attrs...)
	p, _ := appendPacket(nil, b, 1)
	return p
}

func brokeredSession(t *testing.T, plugin string) (*Session, *session.Output) {
	t.Helper()
	login := &session.Login{User: "reader", Password: session.Secret(testPassword)}
	h := map[string]string{"target": "demo-mysql", "agent": "a", "database": "sluice_demo"}
	s := NewSession(Config{
		Target:     session.Target{Name: "demo-mysql", Protocol: "mysql", Database: "sluice_demo", Login: login},
		Authorizer: newAuthorizer(t, h, []string{"analysts"}),
	})
	var out session.Output
	if err := s.FromServer(greetingPacket(plugin), &out); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := s.FromClient(clientHandshake("whoever", "sluice_demo"), &out); err != nil {
		t.Fatal(err)
	}
	return s, &out
}

// serverCheckNative verifies a mysql_native_password proof as the server
// does, from the stored SHA1(SHA1(password)).
func serverCheckNative(pw string, scramble, proof []byte) bool {
	h1 := sha1.Sum([]byte(pw))
	stored := sha1.Sum(h1[:])
	x := sha1.Sum(append(append([]byte(nil), scramble...), stored[:]...))
	if len(proof) != len(x) {
		return false
	}
	cand := make([]byte, len(x))
	for i := range x {
		cand[i] = proof[i] ^ x[i]
	}
	got := sha1.Sum(cand)
	return bytes.Equal(got[:], stored[:])
}

func TestBrokeredNativeHandshake(t *testing.T) {
	s, out := brokeredSession(t, pluginNative)
	if !out.Sensitive {
		t.Fatal("the brokered handshake must be marked sensitive")
	}
	h, err := parseHandshake(out.ToServer[4:])
	if err != nil {
		t.Fatal(err)
	}
	if h.user != "reader" || h.db != "sluice_demo" || h.plugin != pluginNative || !bytes.Equal(h.attrs, []byte{4, 3, 'k', '1', 'v'}) {
		t.Fatalf("handshake sent: %+v", h)
	}
	// The proof is the lenenc auth data after the user name.
	rest := out.ToServer[4+32+len("reader")+1:]
	proof := rest[1 : 1+int(rest[0])]
	if !serverCheckNative(testPassword, testScramble, proof) {
		t.Fatal("the server would reject the proof")
	}
	if bytes.Contains(out.ToServer, []byte(testPassword)) {
		t.Fatal("password on the wire")
	}
	// The server switches to native_password with a new scramble; the final
	// OK reaches the client with the sequence id it expects (2).
	newScramble := []byte("ABCDEFGHIJKLMNOPQRST")
	sw, _ := appendPacket(nil, append(append([]byte{0xFE}, pluginNative+"\x00"...), append(newScramble, 0)...), 2)
	out.Reset()
	if err := s.FromServer(sw, out); err != nil {
		t.Fatal(err)
	}
	if len(out.ToClient) != 0 || out.ToServer[3] != 3 || !serverCheckNative(testPassword, newScramble, out.ToServer[4:]) {
		t.Fatalf("auth switch answer: %x", out.ToServer)
	}
	ok, _ := appendPacket(nil, []byte{0, 0, 0, 2, 0, 0, 0}, 4)
	out.Reset()
	if err := s.FromServer(ok, out); err != nil {
		t.Fatal(err)
	}
	if want, _ := appendPacket(nil, []byte{0, 0, 0, 2, 0, 0, 0}, 2); !bytes.Equal(out.ToClient, want) {
		t.Fatalf("OK to the client: %x", out.ToClient)
	}
	if s.phase != phaseCommand {
		t.Fatal("not in the command phase")
	}
	// The client may now send commands, and may not have sent auth data.
	s2, out2 := brokeredSession(t, pluginNative)
	out2.Reset()
	extra, _ := appendPacket(nil, []byte("password\x00"), 3)
	if err := s2.FromClient(extra, out2); err == nil {
		t.Fatal("a client auth packet during a brokered login must be refused")
	}
}

// Known answer from go-sql-driver/mysql's tests for caching_sha2_password.
func TestCachingSHA2ProofKnownAnswer(t *testing.T) {
	scramble := []byte{10, 47, 74, 111, 75, 73, 34, 48, 88, 76, 114, 74, 37, 13, 3, 80, 82, 2, 23, 21}
	for pw, want := range map[string]string{
		"secret":  "f490e76f66d9d86665ce54d98c78d0acfe2fb0b08b423da807144873d30b312c",
		"secret2": "abc3934a012cf342e876071c8ee202de51785b430258a7a0138bc79c4d800bc6",
	} {
		if got := hex.EncodeToString(cachingSHA2Proof([]byte(pw), scramble)); got != want {
			t.Errorf("%q: %s, want %s", pw, got, want)
		}
	}
}

func TestBrokeredCachingSHA2FullAuthentication(t *testing.T) {
	s, out := brokeredSession(t, pluginCachingSHA2)
	h, _ := parseHandshake(out.ToServer[4:])
	if h.plugin != pluginCachingSHA2 {
		t.Fatalf("plugin %q", h.plugin)
	}
	// The server has no cached entry: perform_full_authentication.
	full, _ := appendPacket(nil, []byte{0x01, 0x04}, 2)
	out.Reset()
	if err := s.FromServer(full, out); err != nil {
		t.Fatal(err)
	}
	if want, _ := appendPacket(nil, []byte{0x02}, 3); !bytes.Equal(out.ToServer, want) {
		t.Fatalf("public key request: %x", out.ToServer)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	kp, _ := appendPacket(nil, append([]byte{0x01}, pemKey...), 4)
	out.Reset()
	if err := s.FromServer(kp, out); err != nil {
		t.Fatal(err)
	}
	if out.ToServer[3] != 5 {
		t.Fatalf("sequence id %d", out.ToServer[3])
	}
	plain, err := rsa.DecryptOAEP(sha1.New(), nil, key, out.ToServer[4:], nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range plain {
		plain[i] ^= testScramble[i%len(testScramble)]
	}
	if string(plain) != testPassword+"\x00" {
		t.Fatalf("the server decrypts %q", plain)
	}
	errPkt, _ := appendPacket(nil, errPayload(1045, "28000", "Access denied"), 6)
	out.Reset()
	if err := s.FromServer(errPkt, out); err != nil {
		t.Fatal(err)
	}
	if out.ToClient[3] != 2 || !strings.Contains(string(out.ToClient), "Access denied") {
		t.Fatalf("ERR to the client: %q", out.ToClient)
	}
}

func TestBrokeredUnknownPluginRefused(t *testing.T) {
	s, out := brokeredSession(t, pluginNative)
	sw, _ := appendPacket(nil, []byte("\xFEmysql_clear_password\x00"), 2)
	out.Reset()
	err := s.FromServer(sw, out)
	if err == nil || !strings.Contains(err.Error(), "mysql_clear_password") {
		t.Fatalf("a plugin sluice cannot perform: %v", err)
	}
	if bytes.Contains(out.ToServer, []byte(testPassword)) {
		t.Fatal("password sent in clear")
	}
}
