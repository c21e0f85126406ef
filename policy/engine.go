package policy

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	cedargo "github.com/cedar-policy/cedar-go"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/extproc/session"
)

// Engine decides statements against the current policy set. The set can be
// swapped at any time (policy reload); decisions in flight keep the set they
// started with.
type Engine struct {
	set   atomic.Pointer[cedar.Set]
	cache analysisCache
}

// NewEngine returns an engine deciding with set.
func NewEngine(set *cedar.Set) *Engine {
	e := &Engine{cache: analysisCache{max: 20000}}
	e.set.Store(set)
	return e
}

// Swap replaces the policy set.
func (e *Engine) Swap(set *cedar.Set) { e.set.Store(set) }

// Policies returns the current policy set.
func (e *Engine) Policies() *cedar.Set { return e.set.Load() }

// Authorizer decides for one session: its principal and target are fixed.
type Authorizer struct {
	engine  *Engine
	target  session.Target
	dialect string
	agent   cedargo.Entity
	tgt     cedargo.Entity
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
	return &Authorizer{
		engine:  e,
		target:  t,
		dialect: t.Protocol,
		agent: cedargo.Entity{
			UID:     cedargo.NewEntityUID(cedar.TypeAgent, cedargo.String(id.Subject)),
			Parents: cedargo.NewEntityUIDSet(groups...),
		},
		tgt: cedargo.Entity{
			UID:        cedargo.NewEntityUID(cedar.TypeTarget, cedargo.String(t.Name)),
			Attributes: cedargo.NewRecord(cedargo.RecordMap{"protocol": cedargo.String(t.Protocol)}),
			Tags:       cedargo.NewRecord(tags),
		},
	}
}

// AuthorizeConnect decides whether the principal may open a session.
func (a *Authorizer) AuthorizeConnect() Decision {
	return a.decide([]Statement{{Kind: "connect", Requests: []Request{{Action: "connect", Object: target}}}}, "")
}

// AuthorizeSQL decides a SQL string: it runs only if every request of every
// statement in it is allowed.
func (a *Authorizer) AuthorizeSQL(sql string) Decision {
	an := a.engine.cache.get(a.dialect, sql)
	if an.Err != nil {
		return Decision{Outcome: Deny, Unparseable: true, Reason: an.Err.Error()}
	}
	return a.decide(an.Statements, sql)
}

func (a *Authorizer) decide(stmts []Statement, sql string) Decision {
	set := a.engine.set.Load()
	ents := &overlay{base: set.Entities, local: map[cedargo.EntityUID]cedargo.Entity{
		a.agent.UID: a.agent, a.tgt.UID: a.tgt,
	}}
	d := Decision{Outcome: Allow}
	seen := map[string]bool{}
	for _, st := range stmts {
		d.Kinds = append(d.Kinds, st.Kind)
		ctx := cedargo.NewRecord(cedargo.RecordMap{
			"statement": cedargo.NewRecord(cedargo.RecordMap{
				"kind": cedargo.String(st.Kind), "text": cedargo.String(sql),
			}),
			"target": cedargo.String(a.target.Name),
		})
		for _, r := range st.Requests {
			if !set.HasAction(r.Action) {
				return Decision{Outcome: Deny, Unparseable: true, Reason: fmt.Sprintf("unknown action %q", r.Action), Kinds: d.Kinds}
			}
			res := a.resource(r.Object, ents)
			ok, diag := cedargo.Authorize(set.Policies, ents, cedargo.Request{
				Principal: a.agent.UID, Action: cedar.Action(r.Action), Resource: res, Context: ctx,
			})
			ids := make([]string, 0, len(diag.Reasons))
			for _, reason := range diag.Reasons {
				ids = append(ids, string(reason.PolicyID))
			}
			if ok != cedargo.Allow {
				what := fmt.Sprintf("%s on %s", strings.ToUpper(r.Action), r.Object)
				reason := what + " is not permitted by any policy"
				if len(ids) > 0 {
					reason = fmt.Sprintf("%s refused by policy %s", what, strings.Join(ids, ", "))
				}
				if len(diag.Errors) > 0 {
					reason += fmt.Sprintf(" (%d policy evaluation errors: %s)", len(diag.Errors), diag.Errors[0])
				}
				return Decision{Outcome: Deny, Reason: reason, Policies: ids, Kinds: d.Kinds}
			}
			for _, id := range ids {
				if !seen[id] {
					seen[id] = true
					d.Policies = append(d.Policies, id)
				}
			}
		}
	}
	return d
}

// resource returns the Cedar UID for o, adding the entities that place it in
// the hierarchy (Table in Schema in Target) unless entity files define them.
func (a *Authorizer) resource(o Object, ents *overlay) cedargo.EntityUID {
	tname := a.target.Name
	switch o.Kind {
	case ObjectTarget:
		return a.tgt.UID
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

// analysisCache keeps analyses by dialect and text, so a repeated statement is
// not parsed again.
type analysisCache struct {
	mu  sync.Mutex
	max int
	m   map[string]Analysis
}

func (c *analysisCache) get(dialect, sql string) Analysis {
	key := dialect + "\x00" + sql
	c.mu.Lock()
	a, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return a
	}
	switch dialect {
	case "postgres":
		a = AnalyzePostgres(sql)
	default:
		a = Analysis{Err: fmt.Errorf("no analyzer for protocol %q", dialect)}
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= c.max {
		c.m = make(map[string]Analysis) // crude bound; hot statements return at once
	}
	c.m[key] = a
	c.mu.Unlock()
	return a
}
