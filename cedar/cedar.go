// Package cedar loads sluice's Cedar schema, policies and entity data, and
// knows the action hierarchy the policies are written against.
package cedar

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	cedargo "github.com/cedar-policy/cedar-go"
)

// Namespace prefixes every sluice entity type.
const Namespace = "Sluice"

// Entity types.
const (
	TypeAgent    cedargo.EntityType = Namespace + "::Agent"
	TypeGroup    cedargo.EntityType = Namespace + "::Group"
	TypeTarget   cedargo.EntityType = Namespace + "::Target"
	TypeSchema   cedargo.EntityType = Namespace + "::Schema"
	TypeTable    cedargo.EntityType = Namespace + "::Table"
	TypeFunction cedargo.EntityType = Namespace + "::Function"
	TypeAction   cedargo.EntityType = Namespace + "::Action"
)

// actionGroups gives each action's groups. It must agree with the schema's
// action declarations (a test checks that it does).
var actionGroups = map[string][]string{
	"read": nil, "write": nil, "ddl": nil, "admin": nil, "session": nil,
	"connect": nil,
	"select":  {"read"},
	"insert":  {"write"}, "update": {"write"}, "delete": {"write"}, "truncate": {"write"},
	"create": {"ddl"}, "alter": {"ddl"}, "drop": {"ddl"},
	"grant": {"admin"}, "set_role": {"admin"}, "alter_system": {"admin"},
	"copy_program": {"admin"}, "read_server_file": {"admin"}, "write_server_file": {"admin"},
	"execute_dynamic": {"admin"}, "set_search_path": {"admin"},
	"call":        nil,
	"transaction": {"session"}, "set": {"session"}, "show": {"session"},
}

// Action returns the UID of a named action.
func Action(name string) cedargo.EntityUID {
	return cedargo.NewEntityUID(TypeAction, cedargo.String(name))
}

// KnownAction reports whether name is an action of the schema.
func KnownAction(name string) bool { _, ok := actionGroups[name]; return ok }

//go:embed defaults
var defaults embed.FS

// Set is a loaded, immutable policy set with its entity data.
type Set struct {
	Policies *cedargo.PolicySet
	Entities cedargo.EntityMap // entity files plus the action hierarchy
	IDs      []string          // policy ids in load order
	Schema   []byte            // the schema text the set was loaded with
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
	for name, groups := range actionGroups {
		uid := Action(name)
		parents := make([]cedargo.EntityUID, 0, len(groups))
		for _, g := range groups {
			parents = append(parents, Action(g))
		}
		set.Entities[uid] = cedargo.Entity{UID: uid, Parents: cedargo.NewEntityUIDSet(parents...)}
	}
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
