package policy

import (
	"path/filepath"
	"testing"
)

// The corpora are case files in the `sluice policy test` format; every
// statement has its expected decision, and most their policies and masked
// columns.
func TestCorpus(t *testing.T) {
	files, _ := filepath.Glob("testdata/corpus/*.yaml")
	if len(files) == 0 {
		t.Fatal("no corpus")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cf, set, err := LoadCases(f)
			if err != nil {
				t.Fatal(err)
			}
			results := cf.Run(set)
			for _, r := range results {
				if len(r.Problems) > 0 {
					t.Errorf("line %d %q as %s: %v", r.Case.Line, r.Case.Text(), r.Case.As, r.Problems)
				}
			}
			t.Logf("%d cases", len(results))
		})
	}
}
