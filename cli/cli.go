// Package cli implements the sluice command line. cmd/sluice only hands it
// the process's arguments, streams and signals, so tests can run any command
// in-process.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// ErrUsage marks a usage error; main exits 2 for it.
var ErrUsage = errors.New("usage error")

const usage = `sluice — a least-privilege gateway between AI agents and databases

Usage:
  sluice serve     --config FILE                 run the ext_proc server Envoy calls
  sluice connect   --gateway ADDR --target NAME --listen ADDR [--ca FILE] [--token-file F | --token T]
                                                 local port for an agent's stock client
  sluice mcp       --gateway ADDR --target NAME [--ca FILE] [--token-file F] [--protocol postgres|mysql] [--http ADDR]
                                                 MCP tools for an agent (query, list_schemas, list_tables,
                                                 describe_table, explain), through the gateway; stdio by default
  sluice envoy bootstrap --config FILE [--out F] render Envoy's bootstrap
  sluice init      DIR [flags]                   write a local configuration folder
  sluice token     --config FILE --sub NAME [--groups a,b] [--ttl 15m]
                                                 mint a short-lived agent token (local key)
  sluice policy validate [--config FILE | --dir DIR]   check policies and entities against the schema
  sluice policy test FILE...                    run policy test cases (non-zero exit on a mismatch)
  sluice approvals list|show ID|approve ID|deny ID [--config F] [--token-file F] [--scope once|fingerprint --minutes N] [--comment C]
                                                 decide statements waiting for a human (approvers' OIDC token)
  sluice audit verify [--config F | --store URL]   check every session's hash chain
  sluice sessions list | show ID | replay ID [--realtime] [--config F]
                                                 sessions, their statements, and replay as the agent saw them
  sluice demo      [--dir DIR]                   run the whole data path locally with demo data
  sluice bench     [--dir DIR] [--duration 10s]  pgbench direct vs Envoy tunnel vs sluice
`

// Main runs the command in args (without the program name).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return ErrUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, rest, stderr)
	case "connect":
		return connect(ctx, rest, stderr)
	case "mcp":
		return mcpCmd(ctx, rest, stderr)
	case "envoy":
		return envoyCmd(ctx, rest, stdout, stderr)
	case "init":
		return initCmd(rest, stdout, stderr)
	case "token":
		return tokenCmd(rest, stdout, stderr)
	case "policy":
		return policyCmd(rest, stdout, stderr)
	case "audit":
		return auditCmd(ctx, rest, stdout, stderr)
	case "sessions":
		return sessionsCmd(ctx, rest, stdout, stderr)
	case "approvals":
		return approvalsCmd(ctx, rest, stdout, stderr)
	case "demo":
		return demo(ctx, rest, stdout, stderr)
	case "bench":
		return bench(ctx, rest, stdout, stderr)
	case "bench-floor": // started by bench; not in the usage
		return benchFloor(ctx, rest, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", cmd, usage)
	return ErrUsage
}

// flags returns a flag set that reports errors to stderr.
func flags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sluice "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return ErrUsage
	}
	return nil
}

// logFlags adds --log-level and returns a constructor for the logger.
func logFlags(fs *flag.FlagSet, stderr io.Writer) func() *slog.Logger {
	level := fs.String("log-level", "info", "debug, info, warn or error")
	format := fs.String("log-format", "text", "text or json")
	return func() *slog.Logger {
		var l slog.Level
		_ = l.UnmarshalText([]byte(*level))
		opts := &slog.HandlerOptions{Level: l}
		if strings.EqualFold(*format, "json") {
			return slog.New(slog.NewJSONHandler(stderr, opts))
		}
		return slog.New(slog.NewTextHandler(stderr, opts))
	}
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
