package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sluicedb/sluice/connector"
	"github.com/sluicedb/sluice/mcptools"
)

// mcpCmd serves sluice's MCP tools for an agent: its statements go through
// an in-process connector to the gateway, with the agent's token.
func mcpCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flags("mcp", stderr)
	gateway := fs.String("gateway", getenv("SLUICE_GATEWAY", "127.0.0.1:10000"), "Envoy tunnel listener host:port")
	target := fs.String("target", "", "target name")
	ca := fs.String("ca", getenv("SLUICE_CA", ""), "CA certificate of the gateway (default: system roots)")
	tok := fs.String("token", "", "bearer token (default: $SLUICE_TOKEN)")
	tokFile := fs.String("token-file", getenv("SLUICE_TOKEN_FILE", ""), "file holding the bearer token, read per connection")
	protocol := fs.String("protocol", "postgres", "target protocol: postgres, mysql or mongodb")
	user := fs.String("user", "agent", "database user name the client presents (sluice logs in with the target's own login)")
	database := fs.String("database", "", "database to open (default: the target's)")
	maxRows := fs.Int("max-rows", 100, "rows a query returns unless the agent asks for fewer or more (at most 10000)")
	httpAddr := fs.String("http", "", "serve MCP's streamable HTTP transport here (loopback) instead of stdio")
	newLogger := logFlags(fs, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *target == "" {
		fmt.Fprintln(stderr, "sluice mcp: --target is required")
		return ErrUsage
	}
	src := tokenSource(*tok, *tokFile)
	log := newLogger()
	c, err := connector.New(connector.Config{Gateway: *gateway, Target: *target, Protocol: *protocol, CAFile: *ca, Token: src, Logger: log})
	if err != nil {
		return err
	}
	// The connector's port is this process's own: only the tools use it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("cannot listen for the tools' connector: %w", err)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { _ = c.Serve(ctx, l) }()
	if *protocol == "mongodb" {
		m := &mcptools.Mongo{URI: fmt.Sprintf("mongodb://%s/?directConnection=true", l.Addr()), Database: *database}
		defer m.Close()
		return runMCP(ctx, mcptools.NewMongoServer(mcptools.MongoConfig{Target: *target, DB: m, MaxDocs: min(*maxRows, 1000), Version: "1", Logger: log}), *httpAddr, *target, log)
	}
	var db mcptools.DB
	switch *protocol {
	case "postgres":
		db = &mcptools.Postgres{URL: fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", *user, l.Addr(), *database)}
	case "mysql":
		if db, err = mcptools.NewMySQL(l.Addr().String(), *user, *database); err != nil {
			return err
		}
	default:
		fmt.Fprintf(stderr, "sluice mcp: --protocol %q: want postgres, mysql or mongodb\n", *protocol)
		return ErrUsage
	}
	defer db.Close()
	srv := mcptools.NewServer(mcptools.Config{Target: *target, DB: db, MaxRows: *maxRows, Version: "1", Logger: log})
	return runMCP(ctx, srv, *httpAddr, *target, log)
}

// runMCP serves srv on stdio, or on streamable HTTP at httpAddr.
func runMCP(ctx context.Context, srv *mcp.Server, httpAddr, target string, log *slog.Logger) error {
	if httpAddr == "" {
		log.Info("sluice mcp serving on stdio", "target", target)
		err := srv.Run(ctx, &mcp.StdioTransport{})
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	if host, _, err := net.SplitHostPort(httpAddr); err != nil || !isLoopback(host) {
		// The tools act with the agent's token for whoever reaches them.
		return fmt.Errorf("--http %s: serve MCP on a loopback address only (127.0.0.1:PORT)", httpAddr)
	}
	hl, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", httpAddr, err)
	}
	log.Info("sluice mcp serving streamable HTTP", "addr", hl.Addr().String(), "target", target)
	hs := &http.Server{Handler: mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = hs.Close()
	}()
	if err := hs.Serve(hl); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
