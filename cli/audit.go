package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicedb/sluice/audit"
	"github.com/sluicedb/sluice/config"
)

// auditTrail is the configured audit trail as serve uses it.
type auditTrail struct {
	sink   audit.Sink   // what sessions' chains write to; nil: no trail
	health func() error // nil while the trail is healthy
	sync   bool         // durable mode: sink is written at each group commit
	close  func()
}

// openAudit opens the configured audit sinks: behind a buffer, or (durable
// mode) as they are. With a store, the process records itself as an
// instance that beats while it runs, so cut-off sessions can be told.
func openAudit(ctx context.Context, c *config.Config, instance string, stdout io.Writer, log *slog.Logger) (*auditTrail, error) {
	var sinks audit.Multi
	var closers []func()
	var store *audit.Store
	if url := c.AuditStore(); url != "" {
		st, err := audit.OpenStore(ctx, url)
		if err != nil {
			return nil, err
		}
		if err := st.StartInstance(ctx, instance, hostname(), os.Getpid()); err != nil {
			st.Close()
			return nil, err
		}
		store = st
		sinks = append(sinks, st)
	}
	switch j := c.Audit.JSONL; j {
	case "":
	case "-":
		sinks = append(sinks, audit.NewJSONLines(stdout))
	default:
		f, err := os.OpenFile(c.Path(j), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, fmt.Errorf("cannot open audit JSON lines: %w", err)
		}
		sinks = append(sinks, audit.NewJSONLines(f))
		closers = append(closers, func() { f.Close() })
	}
	if c.Audit.OTLPLogs {
		sinks = append(sinks, audit.NewOTLPLogs())
	}
	if len(sinks) == 0 {
		return &auditTrail{close: func() {}}, nil
	}
	beatCtx, stopBeat := context.WithCancel(context.WithoutCancel(ctx))
	if store != nil {
		go func() {
			t := time.NewTicker(audit.Beat)
			defer t.Stop()
			for {
				select {
				case <-beatCtx.Done():
					return
				case <-t.C:
					if err := store.Beat(beatCtx, instance); err != nil {
						log.Warn("cannot record the audit heartbeat", "err", err)
					}
				}
			}
		}()
	}
	tr := &auditTrail{sink: sinks, sync: c.Audit.Durability == "sync"}
	var drain func()
	if !tr.sync {
		b := audit.NewBuffered(sinks, 10000)
		tr.sink, tr.health, drain = b, b.Healthy, b.Close
	}
	tr.close = func() {
		if drain != nil {
			drain()
		}
		stopBeat()
		if store != nil {
			// After the last sessions' events: a clean stop.
			if err := store.StopInstance(context.Background(), instance); err != nil {
				log.Warn("cannot record the audit instance's stop", "err", err)
			}
			store.Close()
		}
		for _, c := range closers {
			c()
		}
	}
	return tr, nil
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

func auditStore(ctx context.Context, args []string, name string, stderr io.Writer) (*audit.Store, error) {
	fs := flags(name, stderr)
	cfgPath := fs.String("config", getenv("SLUICE_CONFIG", "sluice.yaml"), "config file")
	store := fs.String("store", "", "audit store (default: the config's audit.store)")
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	url := *store
	if url == "" {
		c, err := config.Load(*cfgPath)
		if err != nil {
			return nil, err
		}
		if url = c.AuditStore(); url == "" {
			return nil, fmt.Errorf("audit is off in %s", *cfgPath)
		}
	}
	return audit.OpenStore(ctx, url)
}

// auditCmd: sluice audit verify.
func auditCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprintln(stderr, "usage: sluice audit verify [--config F | --store URL]")
		return ErrUsage
	}
	st, err := auditStore(ctx, args[1:], "audit verify", stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	events, err := st.Events(ctx, "")
	if err != nil {
		return err
	}
	problems := audit.Verify(events)
	for _, p := range problems {
		fmt.Fprintln(stdout, "FAIL", p)
	}
	if len(problems) > 0 {
		return fmt.Errorf("audit trail verification failed: %d problem(s) in %d events", len(problems), len(events))
	}
	sessions := map[string]bool{}
	for _, e := range events {
		sessions[e.Session] = true
	}
	instances, err := st.Instances(ctx)
	if err != nil {
		return err
	}
	// A chain whose end was never written verifies as intact: the sessions
	// a crash cut off are named, so the gap is seen.
	cut, open := 0, 0
	for _, u := range audit.FindUnclosed(events, instances, time.Now()) {
		fmt.Fprintln(stdout, u)
		if u.CutOff {
			cut++
		} else {
			open++
		}
	}
	if cut > 0 {
		return fmt.Errorf("audit trail incomplete: %d session(s) cut off without session_close (events after their last sealed one may be lost); %d events in %d sessions, every chain intact up to its end", cut, len(events), len(sessions))
	}
	fmt.Fprintf(stdout, "ok: %d events in %d sessions, every chain intact; %d session(s) still open\n", len(events), len(sessions), open)
	return nil
}

// sessionsCmd: sluice sessions list | show ID.
func sessionsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "pause" || args[0] == "resume") {
		// Live sessions, through the approvals API of the sluice that
		// carries them; the same flags as sluice approvals.
		return approvalsCmd(ctx, args, stdout, stderr)
	}
	if len(args) == 0 || (args[0] != "list" && args[0] != "show" && args[0] != "replay") {
		fmt.Fprintln(stderr, "usage: sluice sessions list | show ID | replay ID [--realtime] [--config F | --store URL]\n       sluice sessions pause | resume ID [--comment TEXT] [--config F | --server URL] [--token-file F]")
		return ErrUsage
	}
	verb := args[0]
	var id string
	rest := args[1:]
	realtime := false
	if verb != "list" {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			fmt.Fprintf(stderr, "sluice sessions %s: a session id is required\n", verb)
			return ErrUsage
		}
		id, rest = rest[0], rest[1:]
		for i, a := range rest {
			if a == "--realtime" {
				realtime = true
				rest = append(rest[:i:i], rest[i+1:]...)
				break
			}
		}
	}
	st, err := auditStore(ctx, rest, "sessions "+verb, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	events, err := st.Events(ctx, id)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if verb == "list" {
		fmt.Fprintln(tw, "SESSION\tOPENED\tAGENT\tTARGET\tSTATEMENTS\tREFUSED\tCLOSED")
		type row struct {
			open           audit.Event
			stmts, refused int
			closed         string
		}
		rows := map[string]*row{}
		var order []string
		for _, e := range events {
			r := rows[e.Session]
			if r == nil {
				r = &row{}
				rows[e.Session] = r
				order = append(order, e.Session)
			}
			switch e.Kind {
			case audit.KindSessionOpen:
				r.open = e
			case audit.KindStatement:
				r.stmts++
				if e.Decision != "allow" {
					r.refused++
				}
			case audit.KindSessionClose:
				r.closed = e.Time.Format(time.RFC3339)
			}
		}
		for _, s := range order {
			r := rows[s]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", s, r.open.Time.Format(time.RFC3339), r.open.Agent, r.open.Target, r.stmts, r.refused, r.closed)
		}
		return tw.Flush()
	}
	if len(events) == 0 {
		return fmt.Errorf("no session %s", id)
	}
	if verb == "replay" {
		return replay(ctx, stdout, events, realtime)
	}
	for _, e := range events {
		switch e.Kind {
		case audit.KindSessionOpen:
			fmt.Fprintf(tw, "%s\topen\t%s (groups %s) → %s\n", e.Time.Format(time.RFC3339Nano), e.Agent, strings.Join(e.Groups, ","), e.Target)
		case audit.KindStatement:
			line := fmt.Sprintf("%s\t%s\t%s", e.Time.Format(time.RFC3339Nano), e.Decision, e.Statement)
			if len(e.Masked) > 0 {
				line += "  [masked: " + strings.Join(e.Masked, ", ") + "]"
			}
			if e.Error != "" {
				line += "  → " + e.Error
			} else {
				line += fmt.Sprintf("  → %d rows in %.2f ms", e.Rows, e.LatencyMS)
			}
			fmt.Fprintln(tw, line)
		case audit.KindSessionClose:
			fmt.Fprintf(tw, "%s\tclose\t%d bytes in, %d bytes out\n", e.Time.Format(time.RFC3339Nano), e.BytesIn, e.BytesOut)
		case audit.KindSessionPaused:
			fmt.Fprintf(tw, "%s\tsession_paused\tby %s: %s\n", e.Time.Format(time.RFC3339Nano), e.By, e.Reason)
		case audit.KindSessionResumed:
			fmt.Fprintf(tw, "%s\tsession_resumed\tby %s\n", e.Time.Format(time.RFC3339Nano), e.By)
		}
	}
	return tw.Flush()
}

// replay prints a session as the agent saw it: each statement, then its
// result (masked values masked) or error, in order; with realtime, at the
// pace it happened.
func replay(ctx context.Context, w io.Writer, events []audit.Event, realtime bool) error {
	start := events[0].Time
	prev := start
	for _, e := range events {
		if realtime && e.Time.After(prev) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(e.Time.Sub(prev)):
			}
			prev = e.Time
		}
		at := fmt.Sprintf("[+%8.3fs]", e.Time.Sub(start).Seconds())
		switch e.Kind {
		case audit.KindSessionOpen:
			fmt.Fprintf(w, "%s session %s: %s (groups %s) connected to %s\n", at, e.Session, e.Agent, strings.Join(e.Groups, ","), e.Target)
		case audit.KindSessionClose:
			fmt.Fprintf(w, "%s session closed (%d bytes from the client, %d to it)\n", at, e.BytesIn, e.BytesOut)
		case audit.KindSessionPaused:
			fmt.Fprintf(w, "%s session paused by %s: %s\n", at, e.By, e.Reason)
		case audit.KindSessionResumed:
			fmt.Fprintf(w, "%s session resumed by %s\n", at, e.By)
		case audit.KindStatement:
			fmt.Fprintf(w, "%s %s=> %s\n", at, e.Target, e.Statement)
			if e.Result != nil {
				printResult(w, e.Result)
			}
			switch {
			case e.Error != "":
				fmt.Fprintf(w, "ERROR: %s\n", e.Error)
			case e.Result == nil:
				fmt.Fprintf(w, "(%d rows affected)\n", e.Rows)
			}
			fmt.Fprintln(w)
		}
	}
	return nil
}

func printResult(w io.Writer, r *audit.Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, " "+strings.Join(r.Columns, "\t ")+"\t")
	for _, row := range r.Rows {
		cells := make([]string, len(row))
		for i, v := range row {
			if v == nil {
				cells[i] = " NULL"
			} else {
				cells[i] = " " + strings.NewReplacer("\t", " ", "\n", " ").Replace(*v)
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	_ = tw.Flush()
	n := fmt.Sprintf("(%d rows", len(r.Rows))
	if r.Truncated {
		n += ", more not recorded"
	}
	fmt.Fprintln(w, n+")")
}
