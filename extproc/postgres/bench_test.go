package postgres

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/mask"
	"github.com/sluicedb/sluice/policy"
)

// benchResult is a 100 MB result of 10 text columns in 64 KB chunks.
func benchResult(b *testing.B) (rd []byte, chunks [][]byte, size int) {
	fields := make([]pgproto3.FieldDescription, 10)
	for i := range fields {
		fields[i] = pgproto3.FieldDescription{Name: []byte(fmt.Sprintf("c%d", i)), DataTypeOID: 25}
	}
	rd = enc(b, &pgproto3.RowDescription{Fields: fields})
	vals := make([][]byte, 10)
	for i := range vals {
		vals[i] = []byte(strings.Repeat("v", 90) + fmt.Sprintf("user%d@example.com", i))
	}
	row := enc(b, &pgproto3.DataRow{Values: vals})
	var all []byte
	for len(all) < 100<<20 {
		all = append(all, row...)
	}
	for i := 0; i < len(all); i += 64 << 10 {
		chunks = append(chunks, all[i:min(i+64<<10, len(all))])
	}
	return rd, chunks, len(all)
}

// BenchmarkMasking measures masking throughput per core: 2 of 10 columns
// masked, against the same result passed through unmasked.
func BenchmarkMasking(b *testing.B) {
	rd, chunks, size := benchResult(b)
	for _, tc := range []struct {
		name   string
		masked []policy.MaskedColumn
	}{
		{"unmasked", nil},
		{"2-of-10-masked", []policy.MaskedColumn{{Index: 1, Name: "c1", Strategy: "email"}, {Index: 5, Name: "c5", Strategy: "partial:4"}}},
		{"2-of-10-tokenized", []policy.MaskedColumn{{Index: 1, Name: "c1", Strategy: "token"}, {Index: 5, Name: "c5", Strategy: "token"}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(size))
			var out session.Output
			for b.Loop() {
				s := NewSession(Config{Masker: mask.New([]byte("key"))})
				s.phase = phaseReady
				s.client.startup = false
				d := policy.Decision{Outcome: policy.Allow, Masked: [][]policy.MaskedColumn{tc.masked}}
				s.ops = []op{{kind: opQuery, dec: &d}}
				out.Reset()
				if err := s.FromServer(rd, &out); err != nil {
					b.Fatal(err)
				}
				n := 0
				for _, c := range chunks {
					out.Reset()
					if err := s.FromServer(c, &out); err != nil {
						b.Fatal(err)
					}
					n += len(out.ToClient)
				}
				if tc.masked == nil && n != size {
					b.Fatalf("passthrough changed the size: %d vs %d", n, size)
				}
			}
		})
	}
}

// BenchmarkLargeBatch feeds one extended-protocol batch of 20,000
// statements (pgx's ExecBatch) and its answers: the cost per statement
// must not grow with the batch (it did: a scan of the batch per message).
func BenchmarkLargeBatch(b *testing.B) {
	const n = 20000
	var client, server []byte
	row := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("text"), DataTypeOID: 25}}}
	for i := range n {
		v := []byte(strconv.Itoa(i))
		client = append(client, enc(b, &pgproto3.Parse{Query: "select $1::text"}, &pgproto3.Bind{Parameters: [][]byte{v}}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{})...)
		server = append(server, enc(b, &pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, row, &pgproto3.DataRow{Values: [][]byte{v}}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})...)
	}
	client = append(client, enc(b, &pgproto3.Sync{})...)
	server = append(server, enc(b, &pgproto3.ReadyForQuery{TxStatus: 'I'})...)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		s := newTestSession(b, "analysts")
		ready(b, s)
		b.StartTimer()
		var out session.Output
		for _, side := range []struct {
			data   []byte
			client bool
		}{{client, true}, {server, false}} {
			for off := 0; off < len(side.data); off += 64 << 10 {
				out.Reset()
				chunk := side.data[off:min(off+64<<10, len(side.data))]
				var err error
				if side.client {
					err = s.FromClient(chunk, &out)
				} else {
					err = s.FromServer(chunk, &out)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/statement")
}

// BenchmarkMaskingJSON measures JSON-aware masking per core: a 100 MB
// result of (int, json) rows, the JSON built from a customer row
// (row_to_json), masked inside (email and ssn keys), as a whole, or
// scanned by the detectors.
func BenchmarkMaskingJSON(b *testing.B) {
	rd := enc(b, &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("id"), DataTypeOID: 23}, {Name: []byte("j"), DataTypeOID: 114}}})
	var all []byte
	for i := 0; len(all) < 100<<20; i++ {
		j := fmt.Sprintf(`{"id":%d,"name":"User Number %d","email":"user%d@example.com","ssn":"123-45-%04d","plan":"pro","tags":["a","b"],"created":"2024-01-02T03:04:05"}`, i, i, i, i%10000)
		all = append(all, enc(b, &pgproto3.DataRow{Values: [][]byte{[]byte(strconv.Itoa(i)), []byte(j)}})...)
	}
	var chunks [][]byte
	for i := 0; i < len(all); i += 64 << 10 {
		chunks = append(chunks, all[i:min(i+64<<10, len(all))])
	}
	key := func(name, strategy string) policy.MaskedColumn {
		return policy.MaskedColumn{Name: name, Strategy: strategy}
	}
	inside := policy.MaskedColumn{Index: 1, Name: "j", Strategy: "redact", Shape: policy.ShapeJSONObject, Parts: []policy.MaskedColumn{
		key("id", ""), key("name", ""), key("email", "email"), key("ssn", "partial:4"), key("plan", ""), key("tags", ""), key("created", ""),
	}}
	for _, tc := range []struct {
		name   string
		masked []policy.MaskedColumn
		detect bool
	}{
		{"inside", []policy.MaskedColumn{inside}, false},
		{"whole", []policy.MaskedColumn{{Index: 1, Name: "j", Strategy: "redact", Shape: policy.ShapeJSON}}, false},
		{"detectors", nil, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(all)))
			var out session.Output
			for b.Loop() {
				s := NewSession(Config{Masker: mask.New([]byte("key"))})
				s.phase = phaseReady
				s.client.startup = false
				s.detect = tc.detect
				d := policy.Decision{Outcome: policy.Allow, Masked: [][]policy.MaskedColumn{tc.masked}}
				s.ops = []op{{kind: opQuery, dec: &d}}
				out.Reset()
				if err := s.FromServer(rd, &out); err != nil {
					b.Fatal(err)
				}
				for _, c := range chunks {
					out.Reset()
					if err := s.FromServer(c, &out); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkSessionPgbench feeds pgbench -S's bytes, both ways, to a session
// without any transport: sluice's own CPU per statement (cpu-ns/op counts
// every thread of the process, the collector's included). Simple: a new
// literal each time, one shape; prepared: Bind/Execute/Sync of a statement
// parsed once.
func BenchmarkSessionPgbench(b *testing.B) {
	row := enc(b, &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("abalance"), DataTypeOID: 23, Format: 0}}})
	answer := func(aid int, withRow bool) []byte {
		var msgs []interface{ Encode([]byte) ([]byte, error) }
		if withRow {
			msgs = append(msgs, &pgproto3.BindComplete{})
		}
		msgs = append(msgs, &pgproto3.DataRow{Values: [][]byte{[]byte(strconv.Itoa(aid % 1000))}},
			&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
		return enc(b, msgs...)
	}
	for _, mode := range []string{"simple", "prepared"} {
		b.Run(mode, func(b *testing.B) {
			s := newTestSession(b, "analysts")
			ready(b, s)
			var out session.Output
			feed := func(client, server []byte) {
				out.Reset()
				if err := s.FromClient(client, &out); err != nil {
					b.Fatal(err)
				}
				if len(out.ToServer) == 0 {
					b.Fatalf("refused: %q", out.ToClient)
				}
				out.Reset()
				if err := s.FromServer(server, &out); err != nil {
					b.Fatal(err)
				}
			}
			const q = "SELECT abalance FROM pgbench_accounts WHERE aid = "
			if mode == "prepared" {
				feed(enc(b, &pgproto3.Parse{Name: "P_0", Query: q + "$1"}, &pgproto3.Sync{}),
					enc(b, &pgproto3.ParseComplete{}, &pgproto3.ReadyForQuery{TxStatus: 'I'}))
			}
			msgs := make([][2][]byte, 1000)
			for i := range msgs {
				aid := 1 + i*7919%100000
				if mode == "simple" {
					msgs[i] = [2][]byte{enc(b, &pgproto3.Query{String: q + strconv.Itoa(aid) + ";"}), append(append([]byte(nil), row...), answer(aid, false)...)}
				} else {
					msgs[i] = [2][]byte{enc(b, &pgproto3.Bind{PreparedStatement: "P_0", Parameters: [][]byte{[]byte(strconv.Itoa(aid))}},
						&pgproto3.Execute{}, &pgproto3.Sync{}), answer(aid, true)}
				}
			}
			// One statement of the shape first: its proof is once per session.
			feed(msgs[0][0], msgs[0][1])
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := range b.N {
				m := msgs[i%len(msgs)]
				feed(m[0], m[1])
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
