package audit

import (
	"sync"
	"testing"
	"time"
)

func TestBatcherKeepsOrderAndDrainsOnClose(t *testing.T) {
	var mu sync.Mutex
	var got []int
	batches := 0
	b := NewBatcher(1<<20, time.Millisecond, func(xs []int) {
		mu.Lock()
		defer mu.Unlock()
		batches++
		got = append(got, xs...)
	})
	const producers, each = 4, 5000
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if !b.Add(p*each + i) {
					t.Error("Add refused below the limit")
					return
				}
			}
		}()
	}
	wg.Wait()
	b.Close()
	if b.Add(-1) {
		t.Error("Add after Close was accepted")
	}
	b.Close() // twice is harmless
	if len(got) != producers*each {
		t.Fatalf("got %d items, want %d", len(got), producers*each)
	}
	last := map[int]int{}
	for _, v := range got {
		p := v / each
		if prev, ok := last[p]; ok && v <= prev {
			t.Fatalf("producer %d: %d after %d", p, v, prev)
		}
		last[p] = v
	}
	if batches >= producers*each {
		t.Errorf("%d batches for %d items: nothing was batched", batches, producers*each)
	}
}

func TestBatcherRefusesWhenFull(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	b := NewBatcher(4, time.Millisecond, func([]int) {
		entered <- struct{}{}
		<-release
	})
	b.Add(-1)
	<-entered // the worker is busy with the first batch
	for i := range 4 {
		if !b.Add(i) {
			t.Fatalf("item %d refused", i)
		}
	}
	if b.Add(4) {
		t.Fatal("a full batcher accepted an item")
	}
	close(release)
	b.Close()
}
