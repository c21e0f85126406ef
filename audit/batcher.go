package audit

import (
	"sync"
	"time"
)

// Batcher hands items to one worker in batches. Producers append under a
// lock and wake the worker only when a batch starts; the worker then
// lingers a moment to gather more. A busy data path thus pays no goroutine
// wake-up per item — on a small machine those wake-ups, not the writing,
// were most of the audit trail's cost.
type Batcher[T any] struct {
	mu     sync.Mutex
	items  []T
	max    int
	closed bool
	kick   chan struct{}
	done   chan struct{}
}

// NewBatcher starts the worker: fn gets each batch, in order, of at most
// max items gathered over linger.
func NewBatcher[T any](max int, linger time.Duration, fn func([]T)) *Batcher[T] {
	b := &Batcher[T]{max: max, kick: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		var batch []T
		for open := true; open; {
			if _, open = <-b.kick; open {
				timer := time.NewTimer(linger)
				select {
				case <-timer.C:
				case _, open = <-b.kick: // the batch is half full, or closing: go now
				}
				timer.Stop()
			}
			for {
				b.mu.Lock()
				batch, b.items = b.items, batch[:0]
				b.mu.Unlock()
				if len(batch) == 0 {
					break
				}
				fn(batch)
				clear(batch)
			}
		}
	}()
	return b
}

// Add queues v; false means the queue is full (or closed) and v was dropped.
func (b *Batcher[T]) Add(v T) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || len(b.items) >= b.max {
		return false
	}
	b.items = append(b.items, v)
	if n := len(b.items); n == 1 || n == b.max/2 {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	return true
}

// Close runs what is queued and stops the worker.
func (b *Batcher[T]) Close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.kick)
	}
	b.mu.Unlock()
	<-b.done
}
