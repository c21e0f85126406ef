package mysql

import (
	"testing"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/extproc/tracetest"
	"github.com/sluicedb/sluice/policy"
)

// FuzzSession feeds a recorded handshake, then arbitrary client and server
// bytes: the session must never panic, and once it reports an error it stays
// closed.
func FuzzSession(f *testing.F) {
	f.Add([]byte{3, 0, 0, 0, 0x03, 'S', 'E'}, []byte{1, 0, 0, 1, 0x02}, 3)
	f.Add([]byte{0x15, 0, 0, 0, 0x03, 'D', 'R', 'O', 'P', ' ', 'T', 'A', 'B', 'L', 'E', ' ', 'c', 'u', 's', 't', 'o', 'm', 'e', 'r', 's'}, []byte{7, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0}, 5)
	f.Add([]byte{0xff, 0xff, 0xff, 0, 0x03}, []byte{0xff, 0xff, 0xff, 1, 0xfe}, 1)
	tr := tracetest.Load(f, "testdata/traces/mysql-cli-refusal.jsonl")[0]
	set, err := cedar.Default()
	if err != nil {
		f.Fatal(err)
	}
	engine := policy.NewEngine(set)
	engine.SetCatalog(tr.Header.Target, staticCatalog{demoCatalog})
	target := session.Target{Name: tr.Header.Target, Protocol: "mysql", Database: tr.Header.Database}
	f.Fuzz(func(t *testing.T, client, server []byte, cut int) {
		s := NewSession(Config{Target: target,
			Authorizer: engine.Session(session.Identity{Subject: tr.Header.Agent, Groups: tr.Header.Groups}, target)})
		var out session.Output
		// Greeting, handshake response and the server's OK, as recorded.
		for _, ev := range tr.Events[:3] {
			if ev.FromClient {
				_ = s.FromClient(ev.Data, &out)
			} else {
				_ = s.FromServer(ev.Data, &out)
			}
		}
		tracetest.Feed(t, s, client, server, cut, func() bool { return s.phase == phaseClosed })
	})
}
