package audit

import (
	"context"
	"path/filepath"
	"testing"
)

// benchStore is a new SQLite store, closed when the benchmark ends.
func benchStore(b *testing.B) *Store {
	st, err := OpenStore(context.Background(), filepath.Join(b.TempDir(), "audit.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

// One statement event at a time, as a lightly loaded session writes them.
func BenchmarkStoreWriteOne(b *testing.B) {
	st := benchStore(b)
	c := NewChain(nil)
	e, _ := c.Append(Event{Session: "s", Kind: KindStatement, Agent: "a", Target: "t", Statement: "SELECT abalance FROM pgbench_accounts WHERE aid = $1", Decision: "allow", Rows: 1})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := st.WriteBatch([]Event{e}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkChainAppend(b *testing.B) {
	c := NewChain(nil)
	for i := 0; i < b.N; i++ {
		_, _ = c.Append(Event{Session: "s", Kind: KindStatement, Agent: "a", Target: "t", Statement: "SELECT abalance FROM pgbench_accounts WHERE aid = $1", Decision: "allow", Rows: 1})
	}
}

// A busy gateway's batch: 256 statement events with a one-row recording,
// sealed then written in one transaction, per op.
func BenchmarkSealAndStoreBatch(b *testing.B) {
	st := benchStore(b)
	c := NewChain(nil)
	v := "4711"
	batch := make([]Event, 256)
	b.ReportAllocs()
	for b.Loop() {
		for i := range batch {
			batch[i], _ = c.Append(Event{Session: "s", Kind: KindStatement, Agent: "a", Target: "t",
				Statement: "SELECT abalance FROM pgbench_accounts WHERE aid = $1", Fingerprint: "a1b2c3d4e5f60718",
				Decision: "allow", Rows: 1, LatencyMS: 0.412, Result: &Result{Columns: []string{"abalance"}, Rows: [][]*string{{&v}}}})
		}
		if err := st.WriteBatch(batch); err != nil {
			b.Fatal(err)
		}
	}
}
