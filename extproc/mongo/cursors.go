package mongo

import (
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Cursors are the cursors agents opened through this sluice serve, shared
// by all their connections. A driver sends a getMore on whichever pooled
// connection to the server is free, not only the one that ran the find,
// and MongoDB lets the same user continue a cursor from any connection.
// sluice follows that, narrowed to the owner: the target, the login sluice
// used and the agent with its groups (one brokered login may serve many
// agents, and a token with other groups is another owner). A connection
// takes a cursor out while its getMore is in flight and puts it back with
// the reply, so one cursor's plan (its guardrail counts) is never used by
// two connections at once.
type Cursors struct {
	mu       sync.Mutex
	m        map[cursorKey]cursorEntry
	perOwner map[string]int
	max      int // in all
	maxOwner int // of one owner
	idle     time.Duration
	now      func() time.Time
}

type cursorKey struct {
	owner string
	id    int64
}

type cursorEntry struct {
	c    *cursor
	seen time.Time
}

// cursorIdle is how long an unused cursor stays known: MongoDB's default
// cursorTimeoutMillis, after which the server has dropped it too.
const cursorIdle = 10 * time.Minute

// maxCursors bounds the registry, and maxOwnerCursors one owner's part of
// it, so that one agent opening cursors cannot crowd out the others. Past
// a bound, expired cursors are swept and a new cursor that still does not
// fit is not registered (its getMore is answered CursorNotFound: fail
// closed).
const (
	maxCursors      = 100_000
	maxOwnerCursors = 5_000
)

// NewCursors returns an empty registry.
func NewCursors() *Cursors {
	return &Cursors{m: map[cursorKey]cursorEntry{}, perOwner: map[string]int{}, max: maxCursors, maxOwner: maxOwnerCursors, idle: cursorIdle, now: time.Now}
}

// put registers the cursor id as owner's; false if the registry is full.
func (r *Cursors) put(owner string, id int64, c *cursor) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if len(r.m) >= r.max || r.perOwner[owner] >= r.maxOwner {
		for k, e := range r.m {
			if now.Sub(e.seen) > r.idle {
				r.remove(k)
			}
		}
		if len(r.m) >= r.max || r.perOwner[owner] >= r.maxOwner {
			return false
		}
	}
	k := cursorKey{owner, id}
	if _, dup := r.m[k]; !dup {
		r.perOwner[owner]++
	}
	r.m[k] = cursorEntry{c: c, seen: now}
	return true
}

func (r *Cursors) remove(k cursorKey) {
	delete(r.m, k)
	if r.perOwner[k.owner]--; r.perOwner[k.owner] <= 0 {
		delete(r.perOwner, k.owner)
	}
}

// take removes owner's cursor id and returns it, if owner has it and it
// has not expired.
func (r *Cursors) take(owner string, id int64) (*cursor, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := cursorKey{owner, id}
	e, ok := r.m[k]
	if !ok {
		return nil, false
	}
	r.remove(k)
	if r.now().Sub(e.seen) > r.idle {
		return nil, false
	}
	return e.c, true
}

// killable splits a killCursors command's ids into the agent's, which are
// taken out of the registry (given up whatever the server answers: a
// failed kill could leave an id the server later hands out again), and
// the others; ok is false if the ids are not an array of integers.
func (s *Session) killable(body bsoncore.Document) (known, unknown []int64, ok bool) {
	ids, ok := body.Lookup("cursors").ArrayOK()
	if !ok {
		return nil, nil, false
	}
	vals, err := ids.Values()
	if err != nil {
		return nil, nil, false
	}
	for _, v := range vals {
		id, isInt := v.AsInt64OK()
		if !isInt {
			return nil, nil, false
		}
		if _, mine := s.cursors.take(s.cfg.Owner, id); mine {
			known = append(known, id)
		} else {
			unknown = append(unknown, id)
		}
	}
	return known, unknown, true
}

// killReply is the server's answer to killCursors on ids it does not have.
func killReply(notFound []int64) bsoncore.Document {
	return bsoncore.NewDocumentBuilder().
		AppendArray("cursorsKilled", bsoncore.NewArrayBuilder().Build()).
		AppendArray("cursorsNotFound", int64Array(notFound)).
		AppendArray("cursorsAlive", bsoncore.NewArrayBuilder().Build()).
		AppendArray("cursorsUnknown", bsoncore.NewArrayBuilder().Build()).
		AppendDouble("ok", 1).
		Build()
}

// withCursors is a killCursors command naming only ids.
func withCursors(body bsoncore.Document, ids []int64) bsoncore.Document {
	b := bsoncore.NewDocumentBuilder()
	elems, _ := body.Elements()
	for _, e := range elems {
		if e.Key() == "cursors" {
			b.AppendArray("cursors", int64Array(ids))
			continue
		}
		b.AppendValue(e.Key(), e.Value())
	}
	return b.Build()
}

func int64Array(ids []int64) bsoncore.Array {
	a := bsoncore.NewArrayBuilder()
	for _, id := range ids {
		a.AppendInt64(id)
	}
	return a.Build()
}
