package catalog

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedb/sluice/policy"
)

func TestSourceRefreshSharesLoadsAndKeepsLastGood(t *testing.T) {
	var loads atomic.Int32
	var fail atomic.Bool
	rels := map[string][]string{"public.t": {"a"}}
	src := NewSource("demo", func(context.Context) (Snapshot, error) {
		loads.Add(1)
		if fail.Load() {
			return Snapshot{}, errors.New("database down")
		}
		return Snapshot{Relations: rels, Tags: map[string]map[string]string{"public.t.a": {"pii": "yes"}}}, nil
	}, slog.New(slog.DiscardHandler))
	if got := src.Current().SchemasWith("t"); len(got) != 0 {
		t.Fatalf("empty before the first load: %v", got)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); src.Refresh() }()
	}
	wg.Wait()
	if n := loads.Load(); n < 1 || n > 2 {
		t.Fatalf("%d loads for 8 concurrent misses", n)
	}
	cat := src.Current()
	if cols, ok := cat.Columns("public", "t"); !ok || cols[0] != "a" {
		t.Fatalf("columns: %v %v", cols, ok)
	}
	if tags := cat.(policy.ColumnTagger).ColumnTags("public", "t", "a"); tags["pii"] != "yes" {
		t.Fatalf("tags: %v", tags)
	}
	gen := cat.Generation()
	fail.Store(true)
	if got := src.Refresh(); got.Generation() != gen {
		t.Fatal("a failed load replaced the last good snapshot")
	}
}

func TestParseTagComment(t *testing.T) {
	tags := policy.ParseTagComment("work phone sluice:pii=phone sluice:secret, other words")
	if tags["pii"] != "phone" || tags["secret"] != "yes" || len(tags) != 2 {
		t.Fatalf("%v", tags)
	}
	if policy.ParseTagComment("no tags here") != nil {
		t.Fatal("tags from an untagged comment")
	}
}
