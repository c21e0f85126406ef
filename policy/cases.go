package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"gopkg.in/yaml.v3"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/extproc/session"
)

// CaseFile is a policy test file: who asks, what SQL, and what sluice must
// decide. `sluice policy test FILE` runs it in CI; sluice's own corpus uses
// the same format.
type CaseFile struct {
	// Policies is a policy folder relative to the file; empty: the
	// embedded defaults.
	Policies string `yaml:"policies"`
	// Catalog gives each target's relations: "schema.table" → columns.
	Catalog map[string]map[string][]string `yaml:"catalog"`
	// Tags give column tags per target: "schema.table.column" → tags, as
	// entity files or column comments would.
	Tags       map[string]map[string]map[string]string `yaml:"tags"`
	Targets    map[string]CaseTarget                   `yaml:"targets"`
	Principals map[string]CasePrincipal                `yaml:"principals"`
	Cases      []Case                                  `yaml:"cases"`
}

// CaseTarget describes a target of a case file.
type CaseTarget struct {
	Protocol string            `yaml:"protocol"`
	Database string            `yaml:"database"`
	Tags     map[string]string `yaml:"tags"`
}

// CasePrincipal is an agent identity.
type CasePrincipal struct {
	Sub    string   `yaml:"sub"`
	Groups []string `yaml:"groups"`
}

// Case is one expectation.
type Case struct {
	As     string `yaml:"as"`     // a key of Principals
	Target string `yaml:"target"` // a key of Targets; empty if there is one
	SQL    string `yaml:"sql"`
	// Command is a MongoDB command as extended JSON (a mongodb target's
	// cases), run in its "$db" or the target's database; Sequences are its
	// kind-1 sections ("documents", "updates", "deletes"), each document
	// as extended JSON.
	Command   string              `yaml:"command"`
	Sequences map[string][]string `yaml:"sequences"`
	Expect    string              `yaml:"expect"` // allow, deny or approval
	// Policies, when given, must equal the determining policy ids.
	Policies []string `yaml:"policies"`
	// Masked, when given (even empty), must equal the masked output
	// columns, by name, over all statements.
	Masked *[]string `yaml:"masked"`
	// Strategies and Typed, when given, must equal the mask strategy and
	// the typed mask of each named masked column.
	Strategies map[string]string `yaml:"strategies"`
	Typed      map[string]string `yaml:"typed"`
	// Reason, when given, must occur in the decision's reason.
	Reason string `yaml:"reason"`
	Line   int    `yaml:"-"`
}

// Text is what the case decides: its SQL or its MongoDB command.
func (c Case) Text() string {
	if c.Command != "" {
		return c.Command
	}
	return c.SQL
}

// CaseResult is a case and what was decided.
type CaseResult struct {
	Case     Case
	Decision Decision
	Problems []string
}

// LoadCases reads a case file and the policy set it names.
func LoadCases(path string) (*CaseFile, *cedar.Set, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read test file: %w", err)
	}
	var cf CaseFile
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, nil, fmt.Errorf("cannot parse %s: %w", path, err)
	}
	if err := doc.Decode(&cf); err != nil {
		return nil, nil, fmt.Errorf("cannot parse %s: %w", path, err)
	}
	// Remember line numbers for messages.
	if len(doc.Content) > 0 {
		for i := 0; i+1 < len(doc.Content[0].Content); i += 2 {
			if doc.Content[0].Content[i].Value == "cases" {
				for j, n := range doc.Content[0].Content[i+1].Content {
					if j < len(cf.Cases) {
						cf.Cases[j].Line = n.Line
					}
				}
			}
		}
	}
	var set *cedar.Set
	if cf.Policies == "" {
		set, err = cedar.Default()
	} else {
		set, err = cedar.LoadDir(filepath.Join(filepath.Dir(path), cf.Policies))
	}
	if err != nil {
		return nil, nil, err
	}
	return &cf, set, nil
}

type staticSource struct{ c Catalog }

func (s staticSource) Current() Catalog               { return s.c }
func (s staticSource) RefreshAfter(time.Time) Catalog { return s.c }

// Run decides every case and reports mismatches.
func (cf *CaseFile) Run(set *cedar.Set) []CaseResult {
	e := NewEngine(set)
	for name, rels := range cf.Catalog {
		cat := NewStaticCatalog(1, rels)
		cat.Tags = cf.Tags[name]
		e.SetCatalog(name, staticSource{cat})
	}
	var out []CaseResult
	for _, c := range cf.Cases {
		r := CaseResult{Case: c}
		tname := c.Target
		if tname == "" && len(cf.Targets) == 1 {
			for k := range cf.Targets {
				tname = k
			}
		}
		t, ok := cf.Targets[tname]
		p, okP := cf.Principals[c.As]
		switch {
		case !ok:
			r.Problems = append(r.Problems, fmt.Sprintf("unknown target %q", tname))
		case !okP:
			r.Problems = append(r.Problems, fmt.Sprintf("unknown principal %q", c.As))
		default:
			a := e.Session(session.Identity{Subject: p.Sub, Groups: p.Groups},
				session.Target{Name: tname, Protocol: t.Protocol, Database: t.Database, Tags: t.Tags})
			if t.Protocol == "mongodb" {
				d, err := mongoCase(a, c, t.Database)
				if err != nil {
					r.Problems = append(r.Problems, err.Error())
					break
				}
				r.Decision = d
			} else {
				r.Decision = a.AuthorizeSQL(c.SQL)
			}
			r.Problems = check(c, r.Decision)
		}
		out = append(out, r)
	}
	return out
}

// mongoCase decides a MongoDB case's command.
func mongoCase(a *Authorizer, c Case, database string) (Decision, error) {
	cmd, err := MongoCommand(c.Command)
	if err != nil {
		return Decision{}, err
	}
	seqs := map[string][]bsoncore.Document{}
	for id, docs := range c.Sequences {
		for _, js := range docs {
			d, err := MongoCommand(js)
			if err != nil {
				return Decision{}, fmt.Errorf("sequence %s: %w", id, err)
			}
			seqs[id] = append(seqs[id], d)
		}
	}
	db := database
	if v, ok := cmd.Lookup("$db").StringValueOK(); ok {
		db = v
	}
	return a.AuthorizeMongo(db, cmd, seqs, c.Command), nil
}

func check(c Case, d Decision) []string {
	var probs []string
	if got := d.Outcome.String(); got != c.Expect {
		probs = append(probs, fmt.Sprintf("decision %s, want %s (%s)", got, c.Expect, d.Reason))
	}
	if c.Policies != nil && !slices.Equal(d.Policies, c.Policies) {
		probs = append(probs, fmt.Sprintf("policies [%s], want [%s]", strings.Join(d.Policies, " "), strings.Join(c.Policies, " ")))
	}
	if c.Masked != nil {
		var got []string
		for _, st := range d.Masked {
			for _, m := range st {
				got = append(got, m.Name)
			}
		}
		if !slices.Equal(got, *c.Masked) {
			probs = append(probs, fmt.Sprintf("masked [%s], want [%s]", strings.Join(got, " "), strings.Join(*c.Masked, " ")))
		}
	}
	byName := map[string]MaskedColumn{}
	for _, st := range d.Masked {
		for _, m := range st {
			byName[m.Name] = m
		}
	}
	for name, want := range c.Strategies {
		if got := byName[name].Strategy; got != want {
			probs = append(probs, fmt.Sprintf("column %s masked by %q, want %q", name, got, want))
		}
	}
	for name, want := range c.Typed {
		if got := byName[name].Typed; got != want {
			probs = append(probs, fmt.Sprintf("column %s typed mask %q, want %q", name, got, want))
		}
	}
	if c.Reason != "" && !strings.Contains(d.Reason, c.Reason) {
		probs = append(probs, fmt.Sprintf("reason %q lacks %q", d.Reason, c.Reason))
	}
	return probs
}
