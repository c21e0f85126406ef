package extproc_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicedb/sluice/audit"
	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/extproc"
	"github.com/sluicedb/sluice/extproc/postgres"
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

// BenchmarkPointLookup prices one pgbench -S statement through a tunnel as
// Envoy's messages carry it (over an in-process gRPC stream), with the
// audit trail and recordings off and on (into a SQLite store): sluice's
// share of `sluice bench`, without the rest of the machine's noise.
func BenchmarkPointLookup(b *testing.B) {
	for _, bc := range []struct {
		prepared, audited, null bool
	}{{false, false, true}, {false, false, false}, {false, true, false}, {true, false, true}, {true, false, false}, {true, true, false}} {
		prepared, audited := bc.prepared, bc.audited
		mode := "simple"
		if prepared {
			mode = "prepared"
		}
		name := fmt.Sprintf("%s/audit=%v", mode, audited)
		if bc.null {
			// The floor: the same messages echoed by extproc.NullProcessor.
			name = mode + "/null"
		}
		b.Run(name, func(b *testing.B) {
			set, err := cedar.Default()
			if err != nil {
				b.Fatal(err)
			}
			cfg := extproc.Config{
				Targets: targets{"demo": {Name: "demo", Protocol: "postgres"}},
				Policy:  policy.NewEngine(set),
				Protocols: map[string]extproc.NewSessionFunc{"postgres": func(tg session.Target, a *policy.Authorizer, _ session.Approvals, o session.Observer, l *slog.Logger) session.Session {
					return postgres.NewSession(postgres.Config{Target: tg, Authorizer: a, Logger: l, Observer: o})
				}},
				GroupsKey: "groups", Audiences: []string{"sluice"},
			}
			var store *audit.Store
			var buf *audit.Buffered
			if audited {
				store, err = audit.OpenStore(context.Background(), filepath.Join(b.TempDir(), "audit.db"))
				if err != nil {
					b.Fatal(err)
				}
				buf = audit.NewBuffered(store, 10000)
				cfg.Audit, cfg.AuditHealth = buf, buf.Healthy
				defer store.Close()
				defer buf.Close() // when the benchmark fails early; Close is idempotent
			}
			srv := extproc.NewServer(cfg)
			defer srv.Close()
			var proc extprocv3.ExternalProcessorServer = srv
			if bc.null {
				proc = extproc.NullProcessor{}
			}
			client, stop := dial(b, proc)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			st, err := client.Process(ctx)
			if err != nil {
				b.Fatal(err)
			}
			rt := func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse { return roundTrip(b, st, req) }
			rt(headers("demo:5432", map[string]any{"sub": "a", "groups": []any{"analysts"}}))
			rt(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: status200()}})
			startup, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "u", "database": "d"}}).Encode(nil)
			rt(body(true, startup, false))
			var ready []byte
			ready, _ = (&pgproto3.AuthenticationOk{}).Encode(ready)
			ready, _ = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(ready)
			rt(body(false, ready, false))

			// pgbench -S: "simple" sends each statement with its literal, and
			// "prepared" parses it once and then binds and executes it.
			const lookup = "SELECT abalance FROM pgbench_accounts WHERE aid = "
			var answer []byte
			rd := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("abalance"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1}}}
			if prepared {
				var parse, parsed []byte
				parse, _ = (&pgproto3.Parse{Name: "P_0", Query: lookup + "$1;", ParameterOIDs: []uint32{23}}).Encode(parse)
				parse, _ = (&pgproto3.Describe{ObjectType: 'S', Name: "P_0"}).Encode(parse)
				parse, _ = (&pgproto3.Sync{}).Encode(parse)
				rt(body(true, parse, false))
				parsed, _ = (&pgproto3.ParseComplete{}).Encode(parsed)
				parsed, _ = (&pgproto3.ParameterDescription{ParameterOIDs: []uint32{23}}).Encode(parsed)
				parsed, _ = rd.Encode(parsed)
				parsed, _ = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(parsed)
				rt(body(false, parsed, false))
				answer, _ = (&pgproto3.BindComplete{}).Encode(answer)
			} else {
				answer, _ = rd.Encode(answer)
			}
			answer, _ = (&pgproto3.DataRow{Values: [][]byte{[]byte("0")}}).Encode(answer)
			answer, _ = (&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}).Encode(answer)
			answer, _ = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(answer)
			b.ReportAllocs()
			cpu0 := cpuTime()
			i := 0
			for b.Loop() {
				i++
				var q []byte
				if prepared {
					q, _ = (&pgproto3.Bind{PreparedStatement: "P_0", Parameters: [][]byte{[]byte(fmt.Sprint(1 + i%100000))}}).Encode(q)
					q, _ = (&pgproto3.Execute{}).Encode(q)
					q, _ = (&pgproto3.Sync{}).Encode(q)
				} else {
					q, _ = (&pgproto3.Query{String: fmt.Sprintf("%s%d;", lookup, 1+i%100000)}).Encode(nil)
				}
				resp := rt(body(true, q, false))
				if got := resp.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetBody(); len(got) != len(q) {
					b.Fatalf("query not forwarded: %v", resp)
				}
				resp = rt(body(false, answer, false))
				if got := resp.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetBody(); len(got) != len(answer) {
					b.Fatalf("answer not forwarded: %v", resp)
				}
			}
			// The audit work queued by the loop belongs to its cost: finish it.
			cancel()
			stop()
			srv.Close()
			if audited {
				buf.Close()
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
			if audited {
				var n int
				if err := store.DB().QueryRow("SELECT count(*) FROM sluice_audit WHERE kind = 'statement'").Scan(&n); err != nil || n != i {
					b.Fatalf("%d statement events stored for %d statements (%v)", n, i, err)
				}
			}
		})
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
