package mysql

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/guard"
)

func columnDefPacket(name string, seq byte) []byte {
	var b []byte
	for _, s := range []string{"def", "sluice_demo", "orders", "orders", name, name} {
		b = append(appendLenenc(b, uint64(len(s))), s...)
	}
	b = append(b, 0x0c, 63, 0, 11, 0, 0, 0, 3, 0, 0, 0, 0, 0) // binary charset, LONG
	p, _ := appendPacket(nil, b, seq)
	return p
}

func packet(payload []byte, seq byte) []byte {
	p, _ := appendPacket(nil, payload, seq)
	return p
}

// lexicalAnswer is the server's answer to sluice's SELECT of sql_mode and
// character_set_client (CLIENT_DEPRECATE_EOF).
func lexicalAnswer(mode, charset string) []byte {
	b := packet([]byte{2}, 1)
	b = append(b, columnDefPacket("m", 2)...)
	b = append(b, columnDefPacket("c", 3)...)
	row := append(appendLenenc(nil, uint64(len(mode))), mode...)
	row = append(appendLenenc(row, uint64(len(charset))), charset...)
	b = append(b, packet(row, 4)...)
	return append(b, packet([]byte{0xFE, 0, 0, 2, 0, 0, 0}, 5)...)
}

// packets splits what the client received into (seq, first payload byte).
func packets(b []byte) []string {
	var out []string
	for len(b) >= 4 {
		n := int(b[0]) | int(b[1])<<8 | int(b[2])<<16
		out = append(out, fmt.Sprintf("%d:%02x", b[3], b[4]))
		b = b[4+n:]
	}
	return out
}

// After login sluice sets the statement timeout before any client command;
// a result past max_rows ends with ERR in the next row's place, the rest is
// dropped, and a command the client sends meanwhile waits for it.
func TestMySQLTimeoutSetupAndRowCut(t *testing.T) {
	h := map[string]string{"target": "demo-mysql", "agent": "a", "database": "sluice_demo"}
	s := NewSession(Config{
		Target:     session.Target{Name: "demo-mysql", Protocol: "mysql", Database: "sluice_demo", Guardrails: guard.Limits{StatementTimeout: 2500 * time.Millisecond, MaxRows: 2}},
		Authorizer: newAuthorizer(t, h, []string{"analysts"}),
	})
	var out session.Output
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.FromServer(greetingPacket(pluginNative), &out))
	must(s.FromClient(clientHandshake("agent", "sluice_demo"), &out))
	out.Reset()
	must(s.FromServer(packet([]byte{0, 0, 0, 2, 0, 0, 0}, 2), &out)) // OK: logged in
	if !bytes.Contains(out.ToServer, []byte("SET SESSION max_statement_time = 2.5")) || out.ToServer[3] != 0 || !bytes.Contains(out.ToServer, []byte(lexicalQuery)) {
		t.Fatalf("setup: %q", out.ToServer)
	}
	out.Reset()
	query := packet(append([]byte{comQuery}, "SELECT id FROM orders"...), 0)
	must(s.FromClient(query, &out))
	if len(out.ToServer) != 0 {
		t.Fatal("a command went to the server before the setup was answered")
	}
	must(s.FromServer(packet([]byte{0, 0, 0, 2, 0, 0, 0}, 1), &out)) // OK to the SET
	if len(out.ToServer) != 0 {
		t.Fatal("a command went to the server before the settings were read")
	}
	must(s.FromServer(lexicalAnswer("STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION", "utf8mb4"), &out))
	if !bytes.Equal(out.ToServer, query) || len(out.ToClient) != 0 {
		t.Fatalf("after setup: to server %q, to client %q", out.ToServer, out.ToClient)
	}
	out.Reset()
	resp := packet([]byte{1}, 1)
	resp = append(resp, columnDefPacket("id", 2)...)
	for i := range 4 {
		resp = append(resp, packet([]byte{1, byte('1' + i)}, byte(3+i))...)
	}
	must(s.FromServer(resp, &out))
	if got := strings.Join(packets(out.ToClient), " "); got != "1:01 2:03 3:01 4:01 5:ff" {
		t.Fatalf("client got %q", got)
	}
	if !bytes.Contains(out.ToClient, []byte("result cut after 2 rows: guardrails.max_rows is 2")) {
		t.Fatalf("error: %q", out.ToClient)
	}
	// The client's next command waits until the cut result has drained.
	out.Reset()
	next := packet(append([]byte{comQuery}, "SELECT 1"...), 0)
	must(s.FromClient(next, &out))
	if len(out.ToServer) != 0 {
		t.Fatal("a command went to the server while a cut result was still arriving")
	}
	must(s.FromServer(packet([]byte{0xFE, 0, 0, 2, 0, 0, 0}, 7), &out))
	if len(out.ToClient) != 0 || !bytes.Equal(out.ToServer, next) {
		t.Fatalf("after the drain: to client %q, to server %q", out.ToClient, out.ToServer)
	}
}
