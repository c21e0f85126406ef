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
