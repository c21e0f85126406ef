// Package extproc is sluice's Envoy external processor: one gRPC stream per
// tunnel, one wire-protocol session per stream.
//
// Envoy streams the tunnel's bytes in FULL_DUPLEX_STREAMED mode both ways;
// nothing reaches either side unless sluice sends it back. The headers phase
// carries the agent's identity (jwt_authn claims in the stream's metadata)
// and the target (the CONNECT authority); a tunnel that may not connect is
// refused there with an HTTP error before a byte reaches the database.
package extproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"go.opentelemetry.io/otel"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sluicedb/sluice/approval"
	"github.com/sluicedb/sluice/audit"
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/guard"
	"github.com/sluicedb/sluice/policy"
)

// ClaimsHeader carries the claims of the agent's verified token, as
// Envoy's jwt_authn filter sets it (forward_payload_header: the payload,
// base64url). Envoy removes any copy a client sends before jwt_authn runs.
const ClaimsHeader = "x-sluice-claims"

// Targets looks up configured databases by name.
type Targets interface {
	Target(name string) (session.Target, bool)
}

// Policy opens the authorizer of a session.
type Policy interface {
	Session(id session.Identity, t session.Target) *policy.Authorizer
}

// NewSessionFunc starts a wire-protocol session for an admitted tunnel;
// appr is nil when no approval service is configured.
type NewSessionFunc func(t session.Target, auth *policy.Authorizer, appr session.Approvals, obs session.Observer, log *slog.Logger) session.Session

// Approver records approval requests and waits for humans' decisions
// (approval.Service).
type Approver interface {
	Grant(ctx context.Context, agent, target, sql, fingerprint string) (*approval.Request, error)
	Submit(ctx context.Context, r *approval.Request) error
	Wait(ctx context.Context, id string) (*approval.Request, error)
	Decide(ctx context.Context, id string, d approval.Decision) (*approval.Request, error)
	Timeout() time.Duration
	// PauseHolds lists the pending requests holding an agent's statements
	// because of its pause, on every replica.
	PauseHolds(ctx context.Context, agent string) ([]string, error)
}

// Config wires a Server.
type Config struct {
	Logger    *slog.Logger
	Targets   Targets
	Policy    Policy
	Protocols map[string]NewSessionFunc // by session.Target.Protocol
	GroupsKey string                    // claim holding the agent's groups
	// MaxTTL and ClockSkew are the token lifetime cap and exp leeway,
	// the same as Envoy's jwt_authn (config.JWT).
	MaxTTL, ClockSkew time.Duration
	// Audiences are the token audiences accepted. sluice checks them, not
	// jwt_authn, so that a token for another audience gets a 401 (as an
	// unauthenticated request) rather than jwt_authn's 403.
	Audiences []string
	// TraceDir, when set, receives a wire trace per tunnel (raw traffic:
	// for debugging and replay tests only).
	TraceDir string
	// Approvals holds statements whose outcome is "approval" for a human;
	// nil refuses them. Agents in AsyncGroups are not held: they get an
	// immediate error naming the request and resubmit once it is approved.
	Approvals   Approver
	AsyncGroups []string
	// Audit receives the hash-chained audit events of every session; nil
	// records none. AuditHealth, when set and failing, refuses new sessions
	// (evidence fails closed) unless AuditFailOpen.
	Audit         audit.Sink
	AuditHealth   func() error
	AuditFailOpen bool
	// AuditSync is the durable mode: a statement's completion reaches the
	// client only once its event is committed to Audit (group commit), so
	// no statement a client saw succeed is missing after a crash.
	AuditSync bool
	// Instance names this process in session_open events (audit.Instance).
	Instance string
	// Pauses keeps agents' pauses where every replica sees them (nil:
	// this process alone).
	Pauses guard.PauseStore
}

// Server implements envoy.service.ext_proc.v3.ExternalProcessor.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer
	cfg      Config
	ctx      context.Context // ends when the server shuts down
	shutdown context.CancelCauseFunc

	// auditQ runs audit work (normalizing statements, hashing, writing) off
	// the data path, in order, on one goroutine.
	auditQ   *audit.Batcher[auditWork]
	auditMu  sync.Mutex
	auditErr error // set when the queue overflowed

	agents *guard.Agents // per-agent guardrail counters
	live   sync.Map      // session id → *tunnel, for pause and resume
	// collected holds durable mode's sealed events until their commit.
	collected collector
}

// errShutdown ends held statements when sluice stops.
var errShutdown = errors.New("sluice is shutting down")

// NewServer returns a Server.
func NewServer(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	s := &Server{cfg: cfg, ctx: ctx, shutdown: cancel, agents: guard.NewAgents(cfg.Pauses)}
	switch {
	case cfg.Audit != nil && cfg.AuditSync:
		// Chains seal into s.collected; each batch is then committed at
		// once and its statements released (group commit: what queues
		// during a commit goes in the next).
		s.auditQ = audit.NewBatcher(20000, 0, func(work []auditWork) {
			for i := range work {
				work[i].do()
			}
			err := audit.WriteBatch(cfg.Audit, s.collected.take())
			if err != nil {
				s.cfg.Logger.Error("cannot commit audit events; their statements are refused", "err", err)
			}
			for i := range work {
				work[i].ack.done(err)
			}
		})
	case cfg.Audit != nil:
		s.auditQ = audit.NewBatcher(20000, 5*time.Millisecond, func(work []auditWork) {
			for i := range work {
				work[i].do()
			}
		})
	}
	return s
}

// Close finishes the queued audit work; call it after the gRPC server stopped.
func (s *Server) Close() {
	if s.auditQ != nil {
		s.auditQ.Close()
	}
}

// enqueueAudit queues audit work; a full queue loses the event and makes
// the trail unhealthy (new sessions are then refused unless fail-open).
func (s *Server) enqueueAudit(w auditWork) {
	if !s.auditQ.Add(w) {
		s.auditMu.Lock()
		s.auditErr = errors.New("audit queue full (or closed): events were lost")
		s.auditMu.Unlock()
	}
}

func (s *Server) auditHealth() error {
	s.auditMu.Lock()
	err := s.auditErr
	s.auditMu.Unlock()
	if err != nil {
		return err
	}
	if s.cfg.AuditHealth != nil {
		return s.cfg.AuditHealth()
	}
	return nil
}

// Shutdown ends the sessions holding statements for approval with a clear
// error (their requests stay pending and may be approved for resubmission).
func (s *Server) Shutdown() { s.shutdown(errShutdown) }

// Process handles one tunnel. It never ends the stream with OK while the
// tunnel lives: Envoy would pass the rest of the tunnel through unchecked.
func (s *Server) Process(stream extprocv3.ExternalProcessor_ProcessServer) (err error) {
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	// Envoy sends the request's trace context with the ext_proc call: the
	// session's span joins Envoy's trace.
	if md, ok := metadata.FromIncomingContext(stream.Context()); ok {
		ctx = otel.GetTextMapPropagator().Extract(ctx, metadataCarrier(md))
	}
	defer context.AfterFunc(s.ctx, func() { cancel(errShutdown) })()
	t := &tunnel{srv: s, stream: stream, log: s.cfg.Logger, ctx: ctx}
	defer t.trace.close()
	defer t.endSpan()
	defer t.closeAudit()
	defer t.closeGuard()
	defer t.stopTimer()
	defer func() {
		if c, ok := t.sess.(interface{ Close() }); ok {
			c.Close()
		}
	}()
	// A bug in one session must not take the server down; its tunnel is
	// reset (Envoy fails closed) and the others go on.
	defer func() {
		if r := recover(); r != nil {
			t.log.Error("session panicked; tunnel reset", "panic", r)
			err = status.Error(codes.Internal, "sluice session failed")
		}
	}()
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				t.log.Debug("tunnel closed")
				return nil
			}
			return fmt.Errorf("cannot receive from envoy: %w", err)
		}
		t.mu.Lock()
		done, err := t.handle(req)
		t.mu.Unlock()
		if err != nil {
			t.log.Error("tunnel failed", "err", err)
			return status.Error(codes.Internal, err.Error())
		}
		if done {
			return nil
		}
	}
}
