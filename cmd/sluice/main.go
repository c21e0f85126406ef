// Command sluice is a least-privilege gateway between AI agents and
// databases. All of it lives in package cli; main only wires the process in.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/sluicedb/sluice/cli"
)

func main() {
	err := cli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, cli.ErrUsage):
		os.Exit(2)
	case errors.Is(err, cli.ErrPolicyTests):
		os.Exit(1)
	default:
		fmt.Fprintln(os.Stderr, "sluice:", err)
		os.Exit(1)
	}
}
