package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/config"
	"github.com/sluicedb/sluice/policy"
)

// ErrPolicyTests marks failing policy tests (exit 1, already reported).
var ErrPolicyTests = errors.New("policy tests failed")

func policyCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: sluice policy validate [--config FILE | --dir DIR]\n       sluice policy test FILE...")
		return ErrUsage
	}
	switch args[0] {
	case "validate":
		fs := flags("policy validate", stderr)
		cfgPath := fs.String("config", "", "config file whose policy folder to check")
		dir := fs.String("dir", "", "policy folder to check")
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		var set *cedar.Set
		var err error
		switch {
		case *dir != "":
			set, err = cedar.LoadDir(*dir)
		case *cfgPath != "":
			var c *config.Config
			if c, err = config.Load(*cfgPath); err == nil {
				set, err = loadPolicies(c)
			}
		default:
			set, err = cedar.Default()
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "ok: %d policies and %d entities validate against the schema\n", len(set.IDs), len(set.Entities))
		return nil
	case "test":
		if len(args) < 2 {
			fmt.Fprintln(stderr, "usage: sluice policy test FILE...")
			return ErrUsage
		}
		passed, failed := 0, 0
		for _, f := range args[1:] {
			cf, set, err := policy.LoadCases(f)
			if err != nil {
				return err
			}
			for _, r := range cf.Run(set) {
				if len(r.Problems) == 0 {
					passed++
					continue
				}
				failed++
				fmt.Fprintf(stdout, "FAIL %s:%d as %s: %s\n", f, r.Case.Line, r.Case.As, r.Case.Text())
				for _, p := range r.Problems {
					fmt.Fprintf(stdout, "     %s\n", p)
				}
			}
		}
		fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
		if failed > 0 {
			return ErrPolicyTests
		}
		return nil
	}
	fmt.Fprintf(stderr, "sluice policy: unknown command %q\n", args[0])
	return ErrUsage
}
