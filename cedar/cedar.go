// Package cedar loads sluice's Cedar schema, policies and entity data, and
// knows the action hierarchy the policies are written against.
package cedar

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	cedargo "github.com/cedar-policy/cedar-go"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema"
	"github.com/cedar-policy/cedar-go/x/exp/schema/resolved"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"

	"github.com/sluicedb/sluice/mask"
)

// Namespace prefixes every sluice entity type.
const Namespace = "Sluice"

// Entity types.
const (
	TypeAgent    cedargo.EntityType = Namespace + "::Agent"
	TypeUser     cedargo.EntityType = Namespace + "::User"
	TypeGroup    cedargo.EntityType = Namespace + "::Group"
	TypeTarget   cedargo.EntityType = Namespace + "::Target"
	TypeSchema   cedargo.EntityType = Namespace + "::Schema"
	TypeTable    cedargo.EntityType = Namespace + "::Table"
	TypeFunction cedargo.EntityType = Namespace + "::Function"
	TypeColumn   cedargo.EntityType = Namespace + "::Column"
	TypeAction   cedargo.EntityType = Namespace + "::Action"
)

// Action returns the UID of a named action.
func Action(name string) cedargo.EntityUID {
	return cedargo.NewEntityUID(TypeAction, cedargo.String(name))
}

// HasAction reports whether name is an action of the set's schema.
func (s *Set) HasAction(name string) bool {
	_, ok := s.Entities[Action(name)]
	return ok
}

//go:embed defaults
var defaults embed.FS

// Set is a loaded, immutable policy set with its entity data.
type Set struct {
	Policies *cedargo.PolicySet
	Entities cedargo.EntityMap // entity files plus the action hierarchy
	IDs      []string          // policy ids in load order
	Schema   []byte            // the schema text the set was loaded with
	Index    *Index            // candidate policies per action and principal
	// UsesSession: some policy reads context.session (the guardrails'
	// counters), so its decisions are not memoized.
	UsesSession bool
	// UsesStatementText: some policy reads context.statement.text, or
	// compares the statement record whole, so a decision holds for that
	// text only (no decisions by shape).
	UsesStatementText bool
}

// statementText finds a policy reading the statement's text.
var statementText = regexp.MustCompile(`(\.\s*text\b|\[\s*"text"\s*\]|has\s+"?text\b)`)

// contextRef finds each use of the context (and strings, to skip them),
// attrRef what is read of a record: an attribute, or a has test.
var (
	contextRef = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|\bcontext\b`)
	attrRef    = regexp.MustCompile(`^\s*(?:has\b|\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*"([^"]*)"\s*\])`)
)

// readsStatementText reports whether a policy (as MarshalCedar prints it)
// may read the statement's text: by name, or by using the statement record
// or the whole context as a value (context.statement == {…}, a set of
// vetted statements that contains it), which compares the text too. Only
// the statement's kind and has tests leave the text unread.
func readsStatementText(src []byte) bool {
	if statementText.Match(src) {
		return true
	}
	for _, m := range contextRef.FindAllIndex(src, -1) {
		if src[m[0]] == '"' {
			continue
		}
		rest := src[m[1]:]
		a := attrRef.FindSubmatchIndex(rest)
		if a == nil {
			return true // the whole context
		}
		if a[2] < 0 && a[4] < 0 {
			continue // context has …
		}
		name := rest[max(a[2], a[4]):max(a[3], a[5])]
		if string(name) != "statement" {
			continue
		}
		b := attrRef.FindSubmatchIndex(rest[a[1]:])
		if b == nil || (b[2] >= 0 || b[4] >= 0) && string(rest[a[1]+max(b[2], b[4]):a[1]+max(b[3], b[5])]) != "kind" {
			return true // the statement record as a value, or its text
		}
	}
	return false
}

// sessionAttr finds a policy reading the context's session record.
var sessionAttr = regexp.MustCompile(`context\s*(\.\s*session\b|\[\s*"session"\s*\]|has\s+"?session\b)`)

// validatorFor parses and resolves a schema.
func validatorFor(text []byte) (*resolved.Schema, *validate.Validator, error) {
	var s schema.Schema
	s.SetFilename("schema")
	if err := s.UnmarshalCedar(text); err != nil {
		return nil, nil, fmt.Errorf("cannot parse schema: %w", err)
	}
	r, err := s.Resolve()
	if err != nil {
		return nil, nil, fmt.Errorf("cannot resolve schema: %w", err)
	}
	return r, validate.New(r), nil
}

// Default returns the embedded default schema, policies and entities.
func Default() (*Set, error) {
	sub, err := fs.Sub(defaults, "defaults")
	if err != nil {
		return nil, fmt.Errorf("cannot open embedded defaults: %w", err)
	}
	return Load(sub)
}

// LoadDir loads every *.cedar policy file, the *.cedarschema schema and every
// *.entities.json or entities.json file in dir. With no schema file the
// embedded default schema is used.
func LoadDir(dir string) (*Set, error) {
	return Load(os.DirFS(dir))
}

// Load reads a policy directory from fsys.
func Load(fsys fs.FS) (*Set, error) {
	names, err := fs.Glob(fsys, "*")
	if err != nil {
		return nil, fmt.Errorf("cannot list policy files: %w", err)
	}
	sort.Strings(names)
	set := &Set{Policies: cedargo.NewPolicySet(), Entities: cedargo.EntityMap{}}
	ids := map[string]string{}
	nPolicyFiles := 0
	for _, name := range names {
		switch {
		case strings.HasSuffix(name, ".cedar"):
			nPolicyFiles++
			b, err := fs.ReadFile(fsys, name)
			if err != nil {
				return nil, fmt.Errorf("cannot read %s: %w", name, err)
			}
			list, err := cedargo.NewPolicyListFromBytes(name, b)
			if err != nil {
				return nil, fmt.Errorf("cannot parse %s: %w", name, err)
			}
			for i, p := range list {
				id := string(p.Annotations()["id"])
				if id == "" {
					id = fmt.Sprintf("%s#%d", strings.TrimSuffix(name, ".cedar"), i)
				}
				if prev, dup := ids[id]; dup {
					return nil, fmt.Errorf("policy id %q in %s is already used in %s", id, name, prev)
				}
				ids[id] = name
				set.Policies.Add(cedargo.PolicyID(id), p)
				if sessionAttr.Match(p.MarshalCedar()) {
					set.UsesSession = true
				}
				if readsStatementText(p.MarshalCedar()) {
					set.UsesStatementText = true
				}
				set.IDs = append(set.IDs, id)
			}
		case strings.HasSuffix(name, ".cedarschema"):
			if set.Schema != nil {
				return nil, fmt.Errorf("more than one schema file (%s)", name)
			}
			if set.Schema, err = fs.ReadFile(fsys, name); err != nil {
				return nil, fmt.Errorf("cannot read %s: %w", name, err)
			}
		case name == "entities.json" || strings.HasSuffix(name, ".entities.json"):
			b, err := fs.ReadFile(fsys, name)
			if err != nil {
				return nil, fmt.Errorf("cannot read %s: %w", name, err)
			}
			var em cedargo.EntityMap
			if err := json.Unmarshal(b, &em); err != nil {
				return nil, fmt.Errorf("cannot parse entities %s: %w", name, err)
			}
			for uid, e := range em {
				if _, dup := set.Entities[uid]; dup {
					return nil, fmt.Errorf("entity %s in %s is defined twice", uid, name)
				}
				set.Entities[uid] = e
			}
		}
	}
	if nPolicyFiles == 0 {
		return nil, fmt.Errorf("no *.cedar policy files found")
	}
	if set.Schema == nil {
		if set.Schema, err = defaults.ReadFile("defaults/sluice.cedarschema"); err != nil {
			return nil, fmt.Errorf("cannot read embedded schema: %w", err)
		}
	}
	// Policies and entity data are checked against the schema, so a typo in
	// an action, type or attribute is an error at load, not a silent deny.
	res, v, err := validatorFor(set.Schema)
	if err != nil {
		return nil, err
	}
	var errs []error
	for id, p := range set.Policies.All() {
		if err := v.Policy(string(id), (*xast.Policy)(p.AST())); err != nil {
			errs = append(errs, fmt.Errorf("policy %s (%s): %w", id, p.Position().Filename, err))
		}
	}
	if err := v.Entities(set.Entities); err != nil {
		errs = append(errs, fmt.Errorf("entity data: %w", err))
	}
	errs = append(errs, maskTagErrors(set.Entities)...)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("policies do not validate against the schema: %w", err)
	}
	// The action hierarchy (select in read, …) comes from the schema.
	for uid, a := range res.Actions {
		set.Entities[uid] = a.Entity
	}
	set.Index = buildIndex(set)
	return set, nil
}

// WriteDefaults copies the embedded default policy files into dir.
func WriteDefaults(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cannot create %s: %w", dir, err)
	}
	entries, err := defaults.ReadDir("defaults")
	if err != nil {
		return fmt.Errorf("cannot read embedded defaults: %w", err)
	}
	for _, e := range entries {
		b, err := defaults.ReadFile("defaults/" + e.Name())
		if err != nil {
			return fmt.Errorf("cannot read embedded %s: %w", e.Name(), err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			return fmt.Errorf("cannot write %s: %w", e.Name(), err)
		}
	}
	return nil
}

// maskTagErrors checks the mask and mask_typed tags of column entities:
// a misspelt strategy would otherwise mask as redact without a word.
func maskTagErrors(ents cedargo.EntityMap) []error {
	var errs []error
	for uid, e := range ents {
		if uid.Type != TypeColumn {
			continue
		}
		if v, ok := e.Tags.Get("mask"); ok {
			s := strings.Trim(v.String(), `"`)
			if _, err := mask.ParseTyped(s); err != nil {
				if _, _, err := mask.ParseStrategy(s); err != nil {
					errs = append(errs, fmt.Errorf("column %s: tag mask: %w (or zero, bucket)", uid.ID, err))
				}
			}
		}
		if v, ok := e.Tags.Get("mask_typed"); ok {
			if _, err := mask.ParseTyped(strings.Trim(v.String(), `"`)); err != nil {
				errs = append(errs, fmt.Errorf("column %s: tag mask_typed: %w", uid.ID, err))
			}
		}
	}
	return errs
}
