package audit

import (
	"context"
	"path/filepath"
	"testing"
)

// One statement event at a time, as a lightly loaded session writes them.
func BenchmarkStoreWriteOne(b *testing.B) {
	st, err := OpenStore(context.Background(), filepath.Join(b.TempDir(), "audit.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
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
