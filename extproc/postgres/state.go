package postgres

import (
	"github.com/sluicedb/sluice/policy"
)

// The server's named objects as sluice follows them. Prepared statements
// and portals are created and dropped by client messages, but only the
// server's answers say whether that happened: a Parse may fail, a Bind may
// be skipped after an error, and a Sync ends the transaction that portals
// live in. So the maps below change only when the server confirms
// (ParseComplete, BindComplete, CloseComplete, a statement's
// CommandComplete, ReadyForQuery), and a message naming an object whose
// fate the server has not yet told is decided only once it has.

// prepared is a prepared statement on the server.
type prepared struct {
	sql string
	// sqlLevel: created by SQL PREPARE, whose text sluice does not keep;
	// binding it through the protocol is refused.
	sqlLevel bool
	types    []uint32 // result column types, once described
}

// portal is a portal (Bind) or cursor (DECLARE): what it runs and the
// masking plan it was decided with, fixed when it was created — a later
// Parse of the same statement name does not change it.
type portal struct {
	sql     string
	dec     *policy.Decision
	masked  []policy.MaskedColumn
	stmt    *prepared // the statement it was bound from (nil for cursors)
	formats []int16   // Bind's result format codes
	width   int       // the analysis's result width (0: unknown)
	types   []uint32  // result column types, once the portal is described
	hold    bool      // WITH HOLD: survives its transaction if it commits
	inTx    bool      // created in the transaction now open
}

// resultTypes are the portal's result column types, as far as described.
func (p *portal) resultTypes() []uint32 {
	if p.types != nil {
		return p.types
	}
	if p.stmt != nil {
		return p.stmt.types
	}
	return nil
}

// objects are a session's prepared statements and portals by name.
type objects struct {
	stmts   map[string]*prepared
	portals map[string]*portal
	// txFailed: the transaction now open failed or was rolled back (to a
	// savepoint too): cursors it created die with it.
	txFailed bool
}

func newObjects() objects {
	return objects{stmts: map[string]*prepared{}, portals: map[string]*portal{}}
}

// lookup is the outcome of looking a name up.
type lookup int

const (
	known   lookup = iota // the object exists, as returned
	unknown               // no such object: refuse
	pending               // ops in flight decide it: wait for the server
)

// stmtView is what statement name will be when the server reaches the
// message being decided. An effect queued in the current batch (no Sync
// since) is as good as done: if it fails, the server skips this message
// too. An effect in an earlier batch may still fail without skipping it.
func (s *Session) stmtView(name string) (*prepared, lookup) {
	for i := len(s.ops) - 1; i >= 0; i-- {
		o := &s.ops[i]
		p, affects := o.stmtEffect(name)
		if !affects {
			continue
		}
		if o.batch != s.batch {
			return nil, pending
		}
		if p == nil {
			return nil, unknown
		}
		return p, known
	}
	if p := s.obj.stmts[name]; p != nil {
		return p, known
	}
	return nil, unknown
}

// stmtEffect reports whether o changes statement name and, if so, what
// the name holds after it (nil: nothing).
func (o *op) stmtEffect(name string) (*prepared, bool) {
	switch o.kind {
	case opParse:
		if o.name == name {
			return o.prep, true
		}
	case opClose:
		if o.close == 'S' && o.name == name {
			return nil, true
		}
	case opQuery:
		if name == "" {
			return nil, true // a simple Query drops the unnamed statement
		}
		fallthrough
	case opExecute:
		if o.dec == nil {
			break
		}
		for _, fx := range o.dec.Effects {
			for _, e := range fx {
				switch {
				case e.Kind == policy.EffectPrepare && e.Name == name,
					e.Kind == policy.EffectDeallocate && (e.Name == name || e.Name == ""),
					e.Kind == policy.EffectDiscardAll:
					return nil, true // a new SQL-level one is not bindable either
				}
			}
		}
	}
	return nil, false
}

// portalView is what portal (or cursor) name will be when the server
// reaches the message being decided. Besides the messages that name it,
// a transaction's end drops portals, so an earlier batch still in flight
// leaves every portal uncertain.
func (s *Session) portalView(name string) (*portal, lookup) {
	for i := len(s.ops) - 1; i >= 0; i-- {
		o := &s.ops[i]
		if o.batch != s.batch {
			return nil, pending
		}
		if p, affects := o.portalEffect(name); affects {
			if p == nil {
				return nil, unknown
			}
			return p, known
		}
	}
	if p := s.obj.portals[name]; p != nil {
		return p, known
	}
	return nil, unknown
}

func (o *op) portalEffect(name string) (*portal, bool) {
	switch o.kind {
	case opBind:
		if o.name == name {
			return o.port, true
		}
	case opClose:
		if o.close == 'P' && o.name == name {
			return nil, true
		}
	case opExecute:
		// A DECLARE or CLOSE run through the extended protocol.
		if o.dec == nil || len(o.dec.Effects) == 0 {
			break
		}
		for _, e := range o.dec.Effects[0] {
			switch {
			case e.Kind == policy.EffectDeclare && e.Name == name:
				return cursorOf(o.dec, o.sql, 0, e), true
			case e.Kind == policy.EffectClose && (e.Name == name || e.Name == ""), e.Kind == policy.EffectDiscardAll:
				return nil, true
			}
		}
	}
	return nil, false
}

// cursorOf is the cursor statement i of dec declares.
func cursorOf(dec *policy.Decision, sql string, i int, e policy.Effect) *portal {
	var masked []policy.MaskedColumn
	if i < len(dec.Masked) {
		masked = dec.Masked[i]
	}
	return &portal{sql: sql, dec: dec, masked: masked, width: widthOf(dec, i), hold: e.Hold, inTx: true}
}

// widthOf is statement i's result width in the analysis (0: unknown).
func widthOf(dec *policy.Decision, i int) int {
	if dec == nil || i >= len(dec.Widths) || dec.Widths[i] < 0 {
		return 0
	}
	return dec.Widths[i]
}

// settled reports whether every op of an earlier batch is answered, so
// that names are certain again.
func (s *Session) settled() bool {
	return len(s.ops) == 0 || s.ops[0].batch == s.batch
}

// applyQueryEffects applies the session effects of statement i of a
// simple Query (or of an Execute's one statement), which the server just
// completed.
func (s *Session) applyQueryEffects(head *op, i int) {
	if head.dec == nil || i >= len(head.dec.Effects) {
		return
	}
	for _, e := range head.dec.Effects[i] {
		switch e.Kind {
		case policy.EffectDeclare:
			s.obj.portals[e.Name] = cursorOf(head.dec, head.sql, i, e)
		case policy.EffectClose:
			if e.Name == "" {
				clear(s.obj.portals)
			} else {
				delete(s.obj.portals, e.Name)
			}
		case policy.EffectPrepare:
			s.obj.stmts[e.Name] = &prepared{sqlLevel: true}
		case policy.EffectDeallocate:
			if e.Name != "" {
				delete(s.obj.stmts, e.Name)
				continue
			}
			s.dropNamedStatements()
		case policy.EffectDiscardAll:
			s.dropNamedStatements()
			clear(s.obj.portals)
			s.follower().ApplyEffect(e)
		case policy.EffectCreateRel, policy.EffectDropRel, policy.EffectFeedRel, policy.EffectUncertainRel, policy.EffectDiscardTemp:
			s.follower().ApplyEffect(e)
		}
	}
}

// dropNamedStatements drops every named statement (DEALLOCATE ALL,
// DISCARD ALL); the protocol's unnamed statement is not among them.
func (s *Session) dropNamedStatements() {
	for name := range s.obj.stmts {
		if name != "" {
			delete(s.obj.stmts, name)
		}
	}
}

// commandTag follows what a completed statement did to the transaction.
func (s *Session) commandTag(tag string) {
	if tag == "ROLLBACK" {
		// Rolling back (to a savepoint, too) drops cursors opened since;
		// sluice forgets all the transaction's, to be safe.
		s.obj.txFailed = true
		for name, p := range s.obj.portals {
			if p.inTx {
				delete(s.obj.portals, name)
			}
		}
	}
}

// readyForQuery follows the transaction status: outside a transaction
// block, only cursors held over from a committed one remain.
func (s *Session) readyForQuery(status byte) {
	switch status {
	case 'E':
		s.obj.txFailed = true
	case 'I':
		for name, p := range s.obj.portals {
			if !p.hold || (p.inTx && s.obj.txFailed) {
				delete(s.obj.portals, name)
				continue
			}
			p.inTx = false
		}
		s.obj.txFailed = false
	}
}
