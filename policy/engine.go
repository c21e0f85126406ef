package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cedargo "github.com/cedar-policy/cedar-go"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/guard"
)

// CatalogSource supplies a target's catalog snapshot and refreshes it on
// demand (when a statement names a relation the snapshot lacks).
type CatalogSource interface {
	Current() Catalog
	// RefreshAfter returns a snapshot read by a load that started at or
	// after t, loading now if none has.
	RefreshAfter(t time.Time) Catalog
}

// missTTL is how long a relation a fresh load did not hold is refused
// without another load (unless the schema changes through sluice before):
// a statement naming a table that does not exist costs no catalog read,
// and a table created outside sluice is seen within missTTL.
const missTTL = 5 * time.Second

// maxMisses bounds the negative cache.
const maxMisses = 10000

// Engine decides statements against the current policy set. The set can be
// swapped at any time (policy reload); decisions in flight keep the set they
// started with. Deciding is pure: no I/O beyond a catalog refresh on a miss.
type Engine struct {
	set      atomic.Pointer[cedar.Set]
	shadow   atomic.Bool
	cache    analysisCache
	catalogs sync.Map // target name → CatalogSource

	// misses: "target\x00name" → the start of the load that did not hold
	// it; changed: target → when a statement last changed its schema.
	misses  sync.Map
	nMisses atomic.Int64
	changed sync.Map
}

// NewEngine returns an engine deciding with set.
func NewEngine(set *cedar.Set) *Engine {
	e := &Engine{cache: analysisCache{max: 20000}}
	e.set.Store(set)
	return e
}

// Swap replaces the policy set.
func (e *Engine) Swap(set *cedar.Set) { e.set.Store(set) }

// SetShadow switches observe-only mode: refusals are logged, not enforced.
func (e *Engine) SetShadow(on bool) { e.shadow.Store(on) }

// Policies returns the current policy set.
func (e *Engine) Policies() *cedar.Set { return e.set.Load() }

// SetCatalog gives a target's catalog to the analyzer.
func (e *Engine) SetCatalog(target string, src CatalogSource) { e.catalogs.Store(target, src) }

// Authorizer decides for one session: its principal and target are fixed.
// It is used by one session at a time.
type Authorizer struct {
	engine    *Engine
	target    session.Target
	agent     cedargo.Entity
	ancestors []cedargo.EntityUID
	tgt       cedargo.Entity
	catalog   CatalogSource
	// env is the MySQL session's state that decides how SQL reads (default
	// database, sql_mode, server version), tracked by the wire session.
	env MySQLSession

	// memo remembers this session's recent decisions: a decision is a pure
	// function of the policy set, catalog snapshot, database and text —
	// unless policies read the session's counters.
	memo map[memoKey]Decision
	// shapes are decisions proven to hold for every statement of a shape,
	// and the shapes the proof failed for (not tried again).
	shapes map[memoKey]shapeMemo

	// rels are the relations the session created, as the server confirmed.
	rels relTracker

	guard Guard
	// sessionCtx is the Cedar context's session record while a decision
	// is made, when the policies read it.
	sessionCtx cedargo.Value
}

type memoKey struct {
	set        *cedar.Set
	generation uint64
	env        MySQLSession
	sql        string
	shadow     bool
	shape      bool // sql is a shape (pgShapeKey)
}

const memoSize = 256

// shapeMemo is a shape's decision, if the shape was proven safe.
type shapeMemo struct {
	d    Decision
	safe bool
}

// Session returns the authorizer for a session of id on target.
func (e *Engine) Session(id session.Identity, t session.Target) *Authorizer {
	groups := make([]cedargo.EntityUID, 0, len(id.Groups))
	for _, g := range id.Groups {
		groups = append(groups, cedargo.NewEntityUID(cedar.TypeGroup, cedargo.String(g)))
	}
	tags := cedargo.RecordMap{}
	for k, v := range t.Tags {
		tags[cedargo.String(k)] = cedargo.String(v)
	}
	a := &Authorizer{
		engine: e,
		target: t,
		agent: cedargo.Entity{
			UID:     cedargo.NewEntityUID(cedar.TypeAgent, cedargo.String(id.Subject)),
			Parents: cedargo.NewEntityUIDSet(groups...),
		},
		tgt: cedargo.Entity{
			UID:        cedargo.NewEntityUID(cedar.TypeTarget, cedargo.String(t.Name)),
			Attributes: cedargo.NewRecord(cedargo.RecordMap{"protocol": cedargo.String(t.Protocol)}),
			Tags:       cedargo.NewRecord(tags),
		},
		env: MySQLSession{Database: t.Database},
	}
	if src, ok := e.catalogs.Load(t.Name); ok {
		a.catalog = src.(CatalogSource)
	}
	a.ancestors = ancestors(e.set.Load().Entities, groups)
	return a
}

// ancestors closes groups over group nesting in the entity data.
func ancestors(ents cedargo.EntityMap, groups []cedargo.EntityUID) []cedargo.EntityUID {
	out := slices.Clone(groups)
	for i := 0; i < len(out); i++ {
		if e, ok := ents[out[i]]; ok {
			for p := range e.Parents.All() {
				if !slices.Contains(out, p) {
					out = append(out, p)
				}
			}
		}
	}
	return out
}

// SchemaChanged tells the authorizer a statement that changes the schema
// (CREATE, ALTER, DROP, COMMENT, …) has run: the catalog is read again at
// once, so that a view's new definition or a new comment's tags are not
// left to the next periodic refresh.
func (a *Authorizer) SchemaChanged() {
	if a.catalog != nil {
		now := time.Now()
		a.engine.changed.Store(a.target.Name, now)
		go a.catalog.RefreshAfter(now)
	}
}

// schemaChangedAt is when a statement through sluice last changed the
// target's schema.
func (e *Engine) schemaChangedAt(target string) time.Time {
	if v, ok := e.changed.Load(target); ok {
		return v.(time.Time)
	}
	return time.Time{}
}

// SetDatabase records the session's default database (MySQL USE).
func (a *Authorizer) SetDatabase(db string) { a.env.Database = db }

// Env is the MySQL session state decisions are now made under.
func (a *Authorizer) Env() MySQLSession { return a.env }

// AuthorizeSQLIn decides sql as it reads under env: a prepared statement
// is the tree the server built when it was prepared, in the database and
// sql_mode of then.
func (a *Authorizer) AuthorizeSQLIn(env MySQLSession, sql string) Decision {
	saved := a.env
	a.env = env
	defer func() { a.env = saved }()
	return a.AuthorizeSQL(sql)
}

// SetSQLMode records the session's sql_mode (MySQL), as the server
// confirmed it.
func (a *Authorizer) SetSQLMode(m SQLMode) { a.env.Mode = m }

// SetServer records the MySQL server's version number and kind, which
// decide the executable comments that run.
func (a *Authorizer) SetServer(version int, mariadb bool) {
	a.env.Version, a.env.MariaDB = version, mariadb
}

// AuthorizeConnect decides whether the principal may open a session.
func (a *Authorizer) AuthorizeConnect() Decision {
	set := a.engine.set.Load()
	ents := a.entities(set)
	ok, diag := cedargo.Authorize(set.Index.For(a.agent.UID, a.ancestors, cedar.Action("connect")), ents, cedargo.Request{
		Principal: a.agent.UID, Action: cedar.Action("connect"), Resource: a.tgt.UID, Context: cedargo.NewRecord(nil),
	})
	ids := policyIDs(diag)
	if ok != cedargo.Allow {
		return Decision{Outcome: Deny, Reason: refusal("CONNECT", "the database", ids), Policies: ids}
	}
	return Decision{Outcome: Allow, Policies: ids}
}

// AuthorizeApprove decides whether a human may decide approval requests for
// statements on target (the approve action).
func (e *Engine) AuthorizeApprove(subject string, groups []string, target string) Decision {
	set := e.set.Load()
	gs := make([]cedargo.EntityUID, 0, len(groups))
	for _, g := range groups {
		gs = append(gs, cedargo.NewEntityUID(cedar.TypeGroup, cedargo.String(g)))
	}
	user := cedargo.Entity{UID: cedargo.NewEntityUID(cedar.TypeUser, cedargo.String(subject)), Parents: cedargo.NewEntityUIDSet(gs...)}
	tgt := cedargo.Entity{UID: cedargo.NewEntityUID(cedar.TypeTarget, cedargo.String(target)),
		Attributes: cedargo.NewRecord(cedargo.RecordMap{"protocol": cedargo.String("")})}
	ents := &overlay{base: set.Entities, local: map[cedargo.EntityUID]cedargo.Entity{user.UID: user, tgt.UID: tgt}}
	act := cedar.Action("approve")
	ok, diag := cedargo.Authorize(set.Index.For(user.UID, ancestors(set.Entities, gs), act), ents, cedargo.Request{
		Principal: user.UID, Action: act, Resource: tgt.UID, Context: cedargo.NewRecord(nil),
	})
	ids := policyIDs(diag)
	if ok != cedargo.Allow {
		return Decision{Outcome: Deny, Reason: refusal("APPROVE", "target "+target, ids), Policies: ids}
	}
	return Decision{Outcome: Allow, Policies: ids}
}

// AuthorizeSQL decides a SQL string: it runs only if every request of every
// statement in it is allowed.
func (a *Authorizer) AuthorizeSQL(sql string) Decision {
	set := a.engine.set.Load()
	key := memoKey{set: set, env: a.env, sql: sql, shadow: a.engine.shadow.Load()}
	if c := a.current(); c != nil {
		key.generation = c.Generation()
	}
	// A policy set reading the session's counters decides anew each time.
	if d, ok := a.memo[key]; ok && !set.UsesSession {
		return a.guarded(d)
	}
	if set.UsesSession {
		// Only a set that reads the counters gets them: counting is not
		// free, and every new text of the simple protocol comes here.
		var c guard.Counters
		if a.guard != nil {
			c = a.guard.Counters(time.Now())
		}
		a.sessionCtx = sessionContext(c)
		defer func() { a.sessionCtx = nil }()
	}
	var shapeKey memoKey
	byShape := !set.UsesSession && !set.UsesStatementText && a.target.Protocol == "postgres"
	var spans [][2]int
	if byShape {
		var shape string
		if shape, spans, byShape = pgShapeKey(sql); byShape && len(spans) > 0 {
			shapeKey = key
			shapeKey.sql, shapeKey.shape = shape, true
			if m, ok := a.shapes[shapeKey]; ok {
				if m.safe {
					return a.guarded(m.d)
				}
				byShape = false
			}
		} else {
			byShape = false
		}
	}
	d := a.authorizeSQL(sql)
	if byShape && (d.Outcome == Allow || d.Outcome == Deny) && !d.Unparseable && d.Missing == nil {
		// Once per new shape: prove that no literal can change this
		// decision before any statement of the shape reuses it.
		safe := shapeSafe(sql, spans, a.analyze(sql))
		if a.shapes == nil || len(a.shapes) >= memoSize {
			a.shapes = make(map[memoKey]shapeMemo)
		}
		a.shapes[shapeKey] = shapeMemo{d: d, safe: safe}
		if safe {
			return a.guarded(d)
		}
	}
	if !set.UsesSession {
		if a.memo == nil || len(a.memo) >= memoSize {
			a.memo = make(map[memoKey]Decision)
		}
		a.memo[key] = d
	}
	return a.guarded(d)
}

func (a *Authorizer) authorizeSQL(sql string) Decision {
	an := a.analyze(sql)
	if an.Err != nil {
		// A relation sluice cannot resolve is refused like a forbidden one;
		// anything else it could not analyze is reported as unparseable.
		d := Decision{Outcome: Deny, Unparseable: !errors.Is(an.Err, ErrUnknownRelation), Reason: an.Err.Error()}
		var miss *UnknownRelationError
		if errors.As(an.Err, &miss) {
			d.Missing = miss
		}
		return a.shadowed(d)
	}
	return a.shadowed(a.decide(an.Statements, sql))
}

// current is the catalog the session's statements resolve against: the
// target's snapshot with the session's own relations on top.
func (a *Authorizer) current() Catalog {
	if a.catalog == nil {
		return nil
	}
	return withRelations(a.catalog.Current(), a.rels.current)
}

// ApplyEffect follows a relation effect of a statement the server
// completed (see relTracker); other effects are the wire session's.
func (a *Authorizer) ApplyEffect(e Effect) {
	if a.rels.current == nil {
		a.rels.current, a.rels.committed = &relSet{}, &relSet{}
	}
	a.rels.apply(e)
}

// ServerError tells the authorizer the server reported an error: the
// transaction's changes to the session's relations may be undone.
func (a *Authorizer) ServerError() { a.rels.serverError() }

// ServerCommandTag tells the authorizer a statement completed with tag.
func (a *Authorizer) ServerCommandTag(tag string) { a.rels.commandTag(tag) }

// ServerReady tells the authorizer the server is ready, with its
// transaction status ('I', 'T' or 'E').
func (a *Authorizer) ServerReady(status byte) {
	if a.rels.current != nil && a.rels.ready(status) {
		a.SchemaChanged() // committed: the catalog reader can see them now
	}
}

func (a *Authorizer) analyze(sql string) Analysis {
	cat := a.current()
	an := a.engine.cache.get(a.target.Protocol, a.env, sql, cat)
	what, ok := missed(an.Err)
	if !ok || a.catalog == nil {
		return an
	}
	// The relation or column may be newer than the snapshot: refresh once,
	// unless a load since the last schema change through sluice already
	// missed it.
	key := a.target.Name + "\x00" + what
	changed := a.engine.schemaChangedAt(a.target.Name)
	if v, ok := a.engine.misses.Load(key); ok {
		if at := v.(time.Time); !at.Before(changed) && time.Since(at) < missTTL {
			return an
		}
	}
	// A load started now: one started by a schema change through sluice
	// cannot show a relation created outside it since.
	after := time.Now()
	fresh := withRelations(a.catalog.RefreshAfter(after), a.rels.current)
	if fresh != nil && (cat == nil || fresh.Generation() != cat.Generation()) {
		an = a.engine.cache.get(a.target.Protocol, a.env, sql, fresh)
	}
	if what, ok := missed(an.Err); ok {
		if a.engine.nMisses.Add(1) > maxMisses {
			a.engine.misses.Clear()
			a.engine.nMisses.Store(0)
		}
		a.engine.misses.Store(a.target.Name+"\x00"+what, after)
	}
	return an
}

// missed names what an analysis error says the catalog lacks: a relation,
// or a column (a table dropped and created again with other columns).
func missed(err error) (string, bool) {
	var rel *UnknownRelationError
	if errors.As(err, &rel) {
		return "relation " + rel.Qualified(), true
	}
	var col *unknownColumnError
	if errors.As(err, &col) {
		return "column " + col.name, true
	}
	return "", false
}

func (a *Authorizer) shadowed(d Decision) Decision {
	if a.engine.shadow.Load() && d.Outcome != Allow {
		d.Shadow, d.WouldBe, d.Outcome = true, d.Outcome, Allow
	}
	return d
}

func (a *Authorizer) entities(set *cedar.Set) *overlay {
	return &overlay{base: set.Entities, local: map[cedargo.EntityUID]cedargo.Entity{
		a.agent.UID: a.agent, a.tgt.UID: a.tgt,
	}}
}

func policyIDs(diag cedargo.Diagnostic) []string {
	ids := make([]string, 0, len(diag.Reasons))
	for _, r := range diag.Reasons {
		ids = append(ids, string(r.PolicyID))
	}
	return ids
}

func refusal(action, object string, ids []string) string {
	what := fmt.Sprintf("%s on %s", action, object)
	if len(ids) > 0 {
		return fmt.Sprintf("%s refused by policy %s", what, strings.Join(ids, ", "))
	}
	return what + " is not permitted by any policy"
}

// decider evaluates the requests of one SQL string.
type decider struct {
	a    *Authorizer
	set  *cedar.Set
	ents *overlay
}

func (d *decider) authorize(action string, res cedargo.EntityUID, ctx cedargo.RecordMap, approved bool) (bool, []string, []cedargo.DiagnosticError) {
	ctx["approval"] = cedargo.NewRecord(cedargo.RecordMap{"granted": cedargo.Boolean(approved)})
	act := cedar.Action(action)
	ok, diag := cedargo.Authorize(d.set.Index.For(d.a.agent.UID, d.a.ancestors, act), d.ents, cedargo.Request{
		Principal: d.a.agent.UID, Action: act, Resource: res, Context: cedargo.NewRecord(ctx),
	})
	return ok == cedargo.Allow, policyIDs(diag), diag.Errors
}

func (a *Authorizer) decide(stmts []Statement, sql string) Decision {
	set := a.engine.set.Load()
	d := &decider{a: a, set: set, ents: a.entities(set)}
	out := Decision{Outcome: Allow}
	seen := map[string]bool{}
	addIDs := func(ids []string) {
		for _, id := range ids {
			if !seen[id] {
				seen[id] = true
				out.Policies = append(out.Policies, id)
			}
		}
	}
	var approvalIDs []string
	var approvalReason string
	for _, st := range stmts {
		out.Kinds = append(out.Kinds, st.Kind)
		if err := checkLexical(a.target.Protocol, st); err != nil {
			return Decision{Outcome: Deny, Reason: err.Error(), Policies: []string{PinnedPolicy}, Kinds: out.Kinds, Tables: out.Tables}
		}
		if err := a.checkSettings(st); err != nil {
			return Decision{Outcome: Deny, Reason: err.Error(), Policies: []string{GuardrailsPolicy}, Kinds: out.Kinds, Tables: out.Tables}
		}
		ctx := func() cedargo.RecordMap {
			m := cedargo.RecordMap{
				"statement": cedargo.NewRecord(cedargo.RecordMap{"kind": cedargo.String(st.Kind), "text": cedargo.String(sql)}),
				"target":    cedargo.String(a.target.Name),
				"bounded":   cedargo.Boolean(st.Bounded),
			}
			if a.sessionCtx != nil {
				m["session"] = a.sessionCtx
			}
			return m
		}
		for _, r := range append(slices.Clip(st.Requests), columnRequests(st)...) {
			if r.Object.Kind == ObjectTable {
				if name := r.Object.Schema + "." + r.Object.Name; !slices.Contains(out.Tables, name) {
					out.Tables = append(out.Tables, name)
				}
			}
			if !set.HasAction(r.Action) {
				return Decision{Outcome: Deny, Unparseable: true, Reason: fmt.Sprintf("unknown action %q", r.Action), Kinds: out.Kinds}
			}
			res := a.resource(r.Object, d.ents)
			ok, ids, errs := d.authorize(r.Action, res, ctx(), false)
			if ok {
				addIDs(ids)
				continue
			}
			reason := refusal(strings.ToUpper(r.Action), r.Object.String(), ids)
			if len(errs) > 0 {
				reason += fmt.Sprintf(" (%d policy evaluation errors: %s)", len(errs), errs[0])
			}
			// Refused as is: would a human's approval let it run?
			if okA, idsA, _ := d.authorize(r.Action, res, ctx(), true); okA {
				// The policies that refuse it as is, then those that
				// permit it once approved.
				approvalIDs = append(approvalIDs, ids...)
				approvalIDs = append(approvalIDs, idsA...)
				if approvalReason == "" {
					approvalReason = strings.ToUpper(r.Action) + " on " + r.Object.String() + " needs approval"
				}
				continue
			}
			return Decision{Outcome: Deny, Reason: reason, Policies: ids, Kinds: out.Kinds, Tables: out.Tables}
		}
		masked, protected, err := a.maskingPlan(d, st, ctx)
		if err != nil {
			return Decision{Outcome: Deny, Reason: err.Error(), Kinds: out.Kinds}
		}
		out.Protected = out.Protected || protected
		out.Masked = append(out.Masked, masked)
		width := -1
		if st.Lineage {
			width = len(st.Outputs)
		}
		out.Widths = append(out.Widths, width)
		out.CopyIn = out.CopyIn || st.CopyIn
	}
	if approvalReason != "" {
		out.Outcome, out.Reason = Approval, approvalReason
		out.Policies = nil
		seen = map[string]bool{}
		addIDs(approvalIDs)
	}
	out.Effects = effectsOf(stmts)
	return out
}

// maskingPlan decides, per result column, whether the agent may see its
// sources unmasked, and refuses masked columns used to steer the statement.
func (a *Authorizer) maskingPlan(d *decider, st Statement, ctx func() cedargo.RecordMap) ([]MaskedColumn, bool, error) {
	protected := false
	unmasked := map[Column]bool{}
	visible := func(c Column) bool {
		v, ok := unmasked[c]
		if !ok {
			v = true
			for _, col := range a.expand(c, d.set) {
				if okC, _, _ := d.authorize("read_unmasked", a.columnUID(col, d.ents), ctx(), false); !okC {
					v = false
					break
				}
			}
			unmasked[c] = v
		}
		return v
	}
	for _, c := range st.Uses {
		if visible(c) {
			continue
		}
		if ok, _, _ := d.authorize("use_masked", a.columnUID(c, d.ents), ctx(), false); !ok {
			return nil, false, fmt.Errorf("the statement filters, joins, orders or writes with masked column %s: refused as an inference channel (no policy permits USE_MASKED on it)", c)
		}
		protected = true
	}
	var masked []MaskedColumn
	for i, o := range st.Outputs {
		if m, ok := a.maskPart(o, visible, d); ok {
			m.Index = i
			masked = append(masked, m)
		}
	}
	if spread := slices.IndexFunc(st.Outputs, func(o Output) bool { return o.Spread }); spread >= 0 && len(masked) > 0 && masked[len(masked)-1].Index >= spread {
		return nil, false, fmt.Errorf("the result holds protected columns from %q on, where sluice cannot count the columns before them (a function result's, or a NATURAL JOIN's with one), so the masks cannot be placed: name the columns", st.Outputs[spread].Name)
	}
	if len(masked) > 0 && !st.Lineage {
		return nil, false, fmt.Errorf("the result holds protected columns and target %q has no catalog (catalog_url) to place the masks: refused", a.target.Name)
	}
	if len(masked) > 0 && st.CopyFormat != "" && (st.CopyFormat != "text" || st.CopyOptions) {
		return nil, false, fmt.Errorf("COPY of masked columns is only allowed in plain text format (no DELIMITER, NULL, HEADER or other options), not %s", st.CopyFormat)
	}
	return masked, protected || len(masked) > 0, nil
}

// maskPart plans the masking of one output (or one part of a structured
// output): ok is false when it derives from no protected column.
func (a *Authorizer) maskPart(o Output, visible func(Column) bool, d *decider) (MaskedColumn, bool) {
	var hidden []Column
	for _, c := range o.Sources {
		if !visible(c) {
			hidden = append(hidden, c)
		}
	}
	if len(hidden) == 0 {
		return MaskedColumn{Name: o.Name}, false
	}
	m := MaskedColumn{Name: o.Name, Sources: hidden}
	m.Strategy, m.Typed = a.strategy(hidden, d)
	if !o.Bare {
		// Part of a value is safe to show only for the value itself:
		// reverse(email) or substr(ssn, 1, 5) would show the rest, and a
		// bucket or token of a derived number groups the rows by it.
		if keepsPart(m.Strategy) {
			m.Strategy = "redact"
		}
		if m.Typed == "bucket" || m.Typed == "token" {
			m.Typed = "null"
		}
	}
	if o.Shape == ShapeNone {
		return m, true
	}
	hiddenCol := func(c Column) bool { return !visible(c) }
	if len(o.Parts) == 0 || slices.ContainsFunc(outside(o), hiddenCol) || slices.ContainsFunc(o.Steer, hiddenCol) {
		if o.Shape.IsJSON() {
			m.Shape = ShapeJSON // a whole JSON value: masked as a JSON string
		}
		return m, true
	}
	m.Shape = o.Shape
	for _, p := range o.Parts {
		pm, _ := a.maskPart(p, visible, d)
		m.Parts = append(m.Parts, pm)
	}
	return m, true
}

// TypedStrategies are the masks for values whose type is not text.
var TypedStrategies = []string{"null", "zero", "bucket", "token"}

// strategy picks how to mask a column from its sources' tags: an explicit
// "mask" tag, else full redaction for a "secret" (or credential, or other
// sessions' text) whatever else it is, else by the kind of personal data
// ("pii" tag), else redaction: the strictest tag wins. Sources that
// disagree are redacted. typed is the mask for values that are not text:
// the "mask" tag when it names a typed mask, else the "mask_typed" tag,
// else null.
func (a *Authorizer) strategy(sources []Column, d *decider) (text, typed string) {
	for i, c := range sources {
		s, t := "redact", "null"
		if e, ok := d.ents.Get(a.columnUID(c, d.ents)); ok {
			_, secret := e.Tags.Get("secret")
			_, credential := e.Tags.Get(TagCredential)
			_, sessionText := e.Tags.Get(TagSessionText)
			if v, ok := e.Tags.Get("mask_typed"); ok {
				t = strings.Trim(v.String(), `"`)
			}
			if v, ok := e.Tags.Get("mask"); ok {
				s = strings.Trim(v.String(), `"`)
				if slices.Contains(TypedStrategies, s) {
					t = s
					if s != "null" && s != "token" {
						s = "redact" // zero and bucket have no text form
					}
				}
			} else if secret || credential || sessionText {
				s = "redact"
			} else if v, ok := e.Tags.Get("pii"); ok {
				switch strings.Trim(v.String(), `"`) {
				case "email":
					s = "email"
				case "ssn", "phone", "card", "iban":
					s = "partial:4"
				}
			}
		}
		if i == 0 {
			text, typed = s, t
			continue
		}
		if text != s {
			text = "redact"
		}
		if typed != t {
			typed = "null"
		}
	}
	return text, typed
}

// expand turns a column wildcard (lineage unknown: no catalog) into every
// column the entity data declares for that table, so a tagged column is not
// missed behind a *.
func (a *Authorizer) expand(c Column, set *cedar.Set) []Column {
	if c.Name != "*" {
		return []Column{c}
	}
	return append([]Column{c}, a.declaredColumns(c.Schema, c.Table, set)...)
}

// resource returns the Cedar UID for o, adding the entities that place it in
// the hierarchy (Table in Schema in Target) unless entity files define them.
func (a *Authorizer) resource(o Object, ents *overlay) cedargo.EntityUID {
	tname := a.target.Name
	switch o.Kind {
	case ObjectTarget:
		return a.tgt.UID
	case ObjectColumn:
		return a.columnUID(Column{Schema: o.Schema, Table: o.Name, Name: o.Column}, ents)
	case ObjectFunction:
		uid := cedargo.NewEntityUID(cedar.TypeFunction, cedargo.String(tname+"/"+o.Name))
		ents.ensure(uid, a.tgt.UID)
		return uid
	}
	schemaName := o.Schema
	if o.Kind == ObjectSchema {
		schemaName = o.Name
	}
	schema := cedargo.NewEntityUID(cedar.TypeSchema, cedargo.String(tname+"/"+schemaName))
	ents.ensure(schema, a.tgt.UID)
	if o.Kind == ObjectSchema {
		return schema
	}
	uid := cedargo.NewEntityUID(cedar.TypeTable, cedargo.String(tname+"/"+o.Schema+"."+o.Name))
	ents.ensure(uid, schema)
	return uid
}

// overlay adds per-request entities to the loaded entity data.
type overlay struct {
	base  cedargo.EntityMap
	local map[cedargo.EntityUID]cedargo.Entity
}

func (o *overlay) Get(uid cedargo.EntityUID) (cedargo.Entity, bool) {
	if e, ok := o.local[uid]; ok {
		return e, true
	}
	e, ok := o.base[uid]
	return e, ok
}

// ensure makes uid a child of parent, keeping attributes and tags from the
// entity files.
func (o *overlay) ensure(uid, parent cedargo.EntityUID) {
	if _, ok := o.local[uid]; ok {
		return
	}
	e, ok := o.base[uid]
	if !ok {
		e = cedargo.Entity{UID: uid}
	}
	if !e.Parents.Contains(parent) {
		ps := []cedargo.EntityUID{parent}
		for p := range e.Parents.All() {
			ps = append(ps, p)
		}
		e.Parents = cedargo.NewEntityUIDSet(ps...)
	}
	o.local[uid] = e
}

// analysisCache keeps analyses by dialect, MySQL session state, catalog
// snapshot and text, so a repeated statement is not parsed again.
type analysisCache struct {
	mu  sync.Mutex
	max int
	m   map[cacheKey]Analysis
}

type cacheKey struct {
	dialect, sql string
	env          MySQLSession
	generation   uint64
}

func (c *analysisCache) get(dialect string, env MySQLSession, sql string, cat Catalog) Analysis {
	key := cacheKey{dialect: dialect, env: env, sql: sql}
	if cat != nil {
		key.generation = cat.Generation()
	}
	c.mu.Lock()
	a, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return a
	}
	switch dialect {
	case "postgres":
		a = AnalyzePostgres(sql, cat)
	case "mysql":
		a = AnalyzeMySQL(sql, env, cat)
	default:
		a = Analysis{Err: fmt.Errorf("no analyzer for protocol %q", dialect)}
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= c.max {
		c.m = make(map[cacheKey]Analysis) // crude bound; hot statements return at once
	}
	c.m[key] = a
	c.mu.Unlock()
	return a
}

// Owner names this agent for state it shares across its connections (a
// MongoDB cursor a driver continues on another pooled connection): the
// target and the agent with its groups, so another agent on the same
// brokered login, or the same agent under a token with other groups, is
// another owner. (The wire session adds the login it uses.)
func (a *Authorizer) Owner() string {
	groups := make([]string, 0, len(a.ancestors))
	for _, g := range a.ancestors {
		groups = append(groups, g.String())
	}
	slices.Sort(groups)
	return strings.Join([]string{a.target.Name, a.agent.UID.String(), strings.Join(groups, ",")}, "\x00")
}
