package cedar

import (
	"iter"
	"slices"

	cedargo "github.com/cedar-policy/cedar-go"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// Index narrows the policies evaluated for a request to those whose scope can
// match its action and principal, so a thousand policies cost about what ten
// do. Policies whose scope sluice cannot narrow are always candidates.
type Index struct {
	by    map[indexKey][]int // positions in entries
	all   []indexEntry
	order map[cedargo.PolicyID]int
}

type indexEntry struct {
	id cedargo.PolicyID
	p  *cedargo.Policy
}

type indexKey struct {
	action    cedargo.EntityUID // zero: any action
	principal cedargo.EntityUID // zero: any principal
}

func buildIndex(set *Set) *Index {
	ix := &Index{by: map[indexKey][]int{}, order: map[cedargo.PolicyID]int{}}
	for i, id := range set.IDs {
		p := set.Policies.Get(cedargo.PolicyID(id))
		ix.all = append(ix.all, indexEntry{id: cedargo.PolicyID(id), p: p})
		ix.order[cedargo.PolicyID(id)] = i
		a := (*xast.Policy)(p.AST())
		for _, act := range set.actionsOf(a.Action) {
			for _, pr := range principalKeys(a.Principal) {
				k := indexKey{action: act, principal: pr}
				ix.by[k] = append(ix.by[k], i)
			}
		}
	}
	return ix
}

// actionsOf lists the concrete actions an action scope matches; a zero UID
// stands for all.
func (s *Set) actionsOf(scope xast.IsActionScopeNode) []cedargo.EntityUID {
	var roots []cedargo.EntityUID
	switch sc := scope.(type) {
	case xast.ScopeTypeEq:
		return []cedargo.EntityUID{sc.Entity}
	case xast.ScopeTypeIn:
		roots = []cedargo.EntityUID{sc.Entity}
	case xast.ScopeTypeInSet:
		roots = sc.Entities
	default:
		return []cedargo.EntityUID{{}}
	}
	var out []cedargo.EntityUID
	for uid, e := range s.Entities {
		if uid.Type != TypeAction {
			continue
		}
		if slices.Contains(roots, uid) || s.actionIn(e, roots) {
			out = append(out, uid)
		}
	}
	return out
}

func (s *Set) actionIn(e cedargo.Entity, roots []cedargo.EntityUID) bool {
	for p := range e.Parents.All() {
		if slices.Contains(roots, p) {
			return true
		}
		if pe, ok := s.Entities[p]; ok && s.actionIn(pe, roots) {
			return true
		}
	}
	return false
}

func principalKeys(scope xast.IsPrincipalScopeNode) []cedargo.EntityUID {
	switch sc := scope.(type) {
	case xast.ScopeTypeEq:
		return []cedargo.EntityUID{sc.Entity}
	case xast.ScopeTypeIn:
		return []cedargo.EntityUID{sc.Entity}
	case xast.ScopeTypeIsIn:
		return []cedargo.EntityUID{sc.Entity}
	}
	return []cedargo.EntityUID{{}}
}

// For returns the candidate policies for a request by principal (with its
// ancestors: the agent's groups) on action, in load order.
func (ix *Index) For(principal cedargo.EntityUID, ancestors []cedargo.EntityUID, action cedargo.EntityUID) cedargo.PolicyIterator {
	var pos []int
	for _, a := range []cedargo.EntityUID{action, {}} {
		pos = append(pos, ix.by[indexKey{action: a}]...)
		pos = append(pos, ix.by[indexKey{action: a, principal: principal}]...)
		for _, g := range ancestors {
			pos = append(pos, ix.by[indexKey{action: a, principal: g}]...)
		}
	}
	slices.Sort(pos)
	pos = slices.Compact(pos)
	return candidates{ix: ix, pos: pos}
}

type candidates struct {
	ix  *Index
	pos []int
}

func (c candidates) All() iter.Seq2[cedargo.PolicyID, *cedargo.Policy] {
	return func(yield func(cedargo.PolicyID, *cedargo.Policy) bool) {
		for _, i := range c.pos {
			e := c.ix.all[i]
			if !yield(e.id, e.p) {
				return
			}
		}
	}
}
