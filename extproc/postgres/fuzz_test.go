package postgres

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/extproc/tracetest"
)

// FuzzSession feeds arbitrary bytes to both directions of a ready session:
// it must never panic, and once it reports an error it must stay closed.
func FuzzSession(f *testing.F) {
	f.Add(enc(f, &pgproto3.Query{String: "SELECT 1"}), enc(f, &pgproto3.ReadyForQuery{TxStatus: 'I'}), 3)
	f.Add(enc(f, &pgproto3.Parse{Query: "DROP TABLE t"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}),
		enc(f, &pgproto3.ParseComplete{}, &pgproto3.ErrorResponse{Code: "26000"}, &pgproto3.ReadyForQuery{TxStatus: 'I'}), 7)
	f.Add([]byte{'Q', 0, 0, 0, 2}, []byte{'D', 0, 0, 0, 4}, 1)
	f.Fuzz(func(t *testing.T, client, server []byte, cut int) {
		s := newTestSession(t, "analysts")
		var out session.Output
		start := enc(t, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "u", "database": "app"}})
		_ = s.FromClient(start, &out)
		_ = s.FromServer(enc(t, &pgproto3.AuthenticationOk{}, &pgproto3.ReadyForQuery{TxStatus: 'I'}), &out)
		tracetest.Feed(t, s, client, server, cut, func() bool { return s.phase == phaseClosed })
	})
}

// FuzzStartup feeds arbitrary first messages.
func FuzzStartup(f *testing.F) {
	f.Add(enc(f, &pgproto3.SSLRequest{}))
	f.Add(enc(f, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "u"}}))
	f.Add([]byte{0, 0, 0, 16, 4, 210, 22, 46, 0, 0, 0, 1, 0, 0, 0, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		s := newTestSession(t, "analysts")
		var out session.Output
		_ = s.FromClient(b, &out)
	})
}
