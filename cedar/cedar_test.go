package cedar

import (
	"testing"
	"testing/fstest"
)

func TestDefaultLoads(t *testing.T) {
	set, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if len(set.IDs) < 5 {
		t.Fatalf("only %d default policies", len(set.IDs))
	}
	for _, a := range []string{"select", "drop", "connect", "set_search_path", "read", "admin"} {
		if !set.HasAction(a) {
			t.Errorf("schema lacks action %q", a)
		}
	}
	sel := set.Entities[Action("select")]
	if !sel.Parents.Contains(Action("read")) {
		t.Error("select is not in read: the hierarchy must come from the schema")
	}
}

func TestLoadRejects(t *testing.T) {
	for name, files := range map[string]fstest.MapFS{
		"syntax":         {"p.cedar": {Data: []byte(`permit (principal, action, resource`)}},
		"unknown action": {"p.cedar": {Data: []byte(`permit (principal, action == Sluice::Action::"selekt", resource);`)}},
		"unknown type":   {"p.cedar": {Data: []byte(`permit (principal in Sluice::Team::"x", action, resource);`)}},
		"bad attribute":  {"p.cedar": {Data: []byte(`permit (principal, action == Sluice::Action::"select", resource) when { resource.owner == "x" };`)}},
		"duplicate id": {
			"a.cedar": {Data: []byte(`@id("x") permit (principal, action, resource);`)},
			"b.cedar": {Data: []byte(`@id("x") forbid (principal, action, resource);`)},
		},
		"no policies":  {"entities.json": {Data: []byte(`[]`)}},
		"bad entities": {"p.cedar": {Data: []byte(`permit (principal, action, resource);`)}, "entities.json": {Data: []byte(`{`)}},
	} {
		if _, err := Load(files); err == nil {
			t.Errorf("%s: loaded", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// Every way a policy can read the session's counters is noticed, since
// decisions of such a set are not memoized and only it gets the counters.
func TestUsesSession(t *testing.T) {
	for text, want := range map[string]bool{
		`permit (principal, action == Sluice::Action::"select", resource) when { context.session.paused };`:            true,
		`permit (principal, action == Sluice::Action::"select", resource) when { context["session"].statements > 1 };`: true,
		`permit (principal, action == Sluice::Action::"select", resource) when { context has session };`:               true,
		`permit (principal, action in Sluice::Action::"session", resource) when { context.bounded };`:                  false,
	} {
		set, err := Load(fstest.MapFS{"p.cedar": {Data: []byte(text)}})
		if err != nil {
			t.Fatalf("%s: %v", text, err)
		}
		if set.UsesSession != want {
			t.Errorf("%s: UsesSession %v", text, set.UsesSession)
		}
	}
}

func TestMaskTagsAreValidated(t *testing.T) {
	for tags, bad := range map[string]bool{
		`{"mask": "partial:2"}`:                    false,
		`{"mask": "bucket", "mask_typed": "zero"}`: false,
		`{"mask": "partial2"}`:                     true,
		`{"mask_typed": "year"}`:                   true,
	} {
		_, err := Load(fstest.MapFS{
			"p.cedar":         {Data: []byte(`permit (principal, action, resource);`)},
			"e.entities.json": {Data: []byte(`[{"uid": {"type": "Sluice::Column", "id": "t/public.a.b"}, "attrs": {}, "parents": [], "tags": ` + tags + `}]`)},
		})
		if (err != nil) != bad {
			t.Errorf("tags %s: error %v, want error %v", tags, err, bad)
		}
	}
}
