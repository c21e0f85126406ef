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
	"slices"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	codes2 "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sluicedb/sluice/approval"
	"github.com/sluicedb/sluice/audit"
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/guard"
	"github.com/sluicedb/sluice/policy"
)

// JWTNamespace is the dynamic-metadata namespace of Envoy's jwt_authn filter.
const JWTNamespace = "envoy.filters.http.jwt_authn"

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
}

// Config wires a Server.
type Config struct {
	Logger     *slog.Logger
	Targets    Targets
	Policy     Policy
	Protocols  map[string]NewSessionFunc // by session.Target.Protocol
	PayloadKey string                    // jwt_authn payload_in_metadata key
	GroupsKey  string                    // claim holding the agent's groups
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
}

// errShutdown ends held statements when sluice stops.
var errShutdown = errors.New("sluice is shutting down")

// NewServer returns a Server.
func NewServer(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	s := &Server{cfg: cfg, ctx: ctx, shutdown: cancel, agents: guard.NewAgents()}
	if cfg.Audit != nil {
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

// tunnel is the state of one stream. mu serializes the stream loop and the
// token-expiry timer, which both use the session and send on the stream.
type tunnel struct {
	ctx    context.Context // ends with the stream or the server
	id     string          // Envoy's x-request-id: the session's id
	ident  session.Identity
	target session.Target
	mu     sync.Mutex
	timer  *time.Timer
	srv    *Server
	stream extprocv3.ExternalProcessor_ProcessServer
	log    *slog.Logger
	sess   session.Session
	out    session.Output

	chain         *audit.Chain
	span          trace.Span // the session's span; statements are its children
	memoMu        sync.Mutex // the audit worker and the data path (spans) share the memo
	sqlMemo       map[string][2]string
	guard         *guard.Session
	pauseHold     string // the approval request of a statement held by a pause
	shapes        policy.Shapes
	spanCtx       context.Context
	bytesIn       int64  // from the client
	bytesOut      int64  // to the client
	clientOpen    bool   // response headers answered: bytes may go to the client
	pendingClient []byte // bytes for the client before it was open
	reqDone       bool   // end_of_stream sent toward the server
	expired       bool   // the token expired before the client's first bytes
	respDone      bool   // end_of_stream sent toward the client
	trace         *traceFile
}

func (t *tunnel) handle(req *extprocv3.ProcessingRequest) (done bool, err error) {
	switch r := req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return t.requestHeaders(req, r.RequestHeaders)
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		if err := t.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
			ResponseHeaders: &extprocv3.HeadersResponse{}}}); err != nil {
			return false, fmt.Errorf("cannot answer response headers: %w", err)
		}
		t.clientOpen = true
		if len(t.pendingClient) > 0 {
			b := t.pendingClient
			t.pendingClient = nil
			return false, t.sendBody(false, b, false)
		}
		return false, nil
	case *extprocv3.ProcessingRequest_RequestBody:
		return false, t.body(true, r.RequestBody)
	case *extprocv3.ProcessingRequest_ResponseBody:
		return false, t.body(false, r.ResponseBody)
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return false, t.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{
			RequestTrailers: &extprocv3.TrailersResponse{}}})
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return false, t.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{
			ResponseTrailers: &extprocv3.TrailersResponse{}}})
	default:
		return false, fmt.Errorf("unexpected processing request %T", r)
	}
}

func (t *tunnel) requestHeaders(req *extprocv3.ProcessingRequest, h *extprocv3.HttpHeaders) (bool, error) {
	headers := map[string]string{}
	for _, hv := range h.GetHeaders().GetHeaders() {
		v := hv.Value
		if v == "" {
			v = string(hv.RawValue)
		}
		headers[hv.Key] = v
	}
	t.log = t.log.With("request_id", headers["x-request-id"])
	if headers[":method"] != "CONNECT" {
		return true, t.refuse(typev3.StatusCode_MethodNotAllowed, "sluice carries database tunnels: use CONNECT")
	}
	c := &t.srv.cfg
	id, err := identityFrom(req, tokenRules{payloadKey: c.PayloadKey, groupsKey: c.GroupsKey, audiences: c.Audiences, maxTTL: c.MaxTTL, skew: c.ClockSkew})
	if err != nil {
		return true, t.refuse(typev3.StatusCode_Unauthorized, err.Error())
	}
	name := headers[":authority"]
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		name = name[:i]
	}
	target, ok := t.srv.cfg.Targets.Target(name)
	if !ok {
		return true, t.refuse(typev3.StatusCode_NotFound, fmt.Sprintf("unknown target %q", name))
	}
	t.log = t.log.With("agent", id.Subject, "target", target.Name)
	newSession, ok := t.srv.cfg.Protocols[target.Protocol]
	if !ok {
		return true, t.refuse(typev3.StatusCode_NotImplemented, fmt.Sprintf("protocol %q is not supported", target.Protocol))
	}
	auth := t.srv.cfg.Policy.Session(id, target)
	if d := auth.AuthorizeConnect(); !d.Allowed() {
		t.log.Info("connect refused", "reason", d.Reason)
		return true, t.refuse(typev3.StatusCode_Forbidden, "sluice: "+d.Reason)
	}
	login, err := target.LoginFor(id.Groups)
	if err != nil {
		t.log.Info("connect refused", "reason", err)
		return true, t.refuse(typev3.StatusCode_Forbidden, "sluice: "+err.Error())
	}
	target.Login = login
	if login != nil {
		t.log = t.log.With("db_login", login.User)
	}
	t.id, t.ident, t.target = headers["x-request-id"], id, target
	t.openGuard(auth)
	var appr session.Approvals
	if t.srv.cfg.Approvals != nil {
		appr = t
	}
	if t.srv.cfg.Audit != nil && !t.srv.cfg.AuditFailOpen {
		if err := t.srv.auditHealth(); err != nil {
			t.log.Error("audit failing; session refused", "err", err)
			return true, t.refuse(typev3.StatusCode_ServiceUnavailable, "sluice: the audit trail is failing, so sessions are refused: "+err.Error())
		}
	}
	t.spanCtx, t.span = tracer.Start(t.ctx, "sluice.session", trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		attribute.String("db.system.name", dbSystem(target.Protocol)),
		attribute.String("sluice.agent", id.Subject),
		attribute.String("sluice.acting_for", id.ActingFor),
		attribute.StringSlice("sluice.groups", id.Groups),
		attribute.String("sluice.target", target.Name),
		attribute.String("sluice.session", t.id),
	))
	if t.srv.cfg.Audit != nil {
		t.chain = audit.NewChain(t.srv.cfg.Audit)
		t.audit(audit.Event{Kind: audit.KindSessionOpen, Groups: id.Groups,
			Client: map[string]string{"source": headers["x-forwarded-for"], "user_agent": headers["user-agent"]}})
	}
	instruments.sessions.Add(t.ctx, 1, metric.WithAttributes(attribute.String("sluice.target", target.Name)))
	var obs session.Observer = t
	t.sess = newSession(target, auth, appr, obs, t.log)
	if !id.Expiry.IsZero() {
		t.timer = time.AfterFunc(time.Until(id.Expiry), t.expire)
	}
	if dir := t.srv.cfg.TraceDir; dir != "" {
		h := TraceHeader{Target: target.Name, Protocol: target.Protocol, Agent: id.Subject, Groups: id.Groups, Database: target.Database}
		if login != nil {
			h.Login = login.User
		}
		tr, err := openTrace(dir, headers["x-request-id"], h)
		if err != nil {
			t.log.Warn("no wire trace", "err", err)
		}
		t.trace = tr
	}
	t.log.Info("session opened", "groups", id.Groups, "acting_for", id.ActingFor)
	return false, t.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{}}})
}

// refuse ends the tunnel before any byte flowed, with an HTTP status.
func (t *tunnel) refuse(code typev3.StatusCode, msg string) error {
	t.log.Info("tunnel refused", "status", int(code), "reason", msg)
	return t.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: code},
			Body:    []byte(msg + "\n"),
			Details: "sluice_refused",
			Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{
				Header: &corev3.HeaderValue{Key: "content-type", RawValue: []byte("text/plain")},
			}}},
		}}})
}

func (t *tunnel) body(fromClient bool, b *extprocv3.HttpBody) error {
	if t.sess == nil {
		if !fromClient && t.clientOpen {
			// A reply Envoy made itself (e.g. jwt_authn's 401) before the
			// request reached sluice: no tunnel exists, so pass it on.
			return t.sendBody(false, b.Body, b.EndOfStream)
		}
		return errors.New("body before an admitted request")
	}
	t.out.Reset()
	var err error
	if fromClient && t.expired {
		// The token expired before the client spoke.
		t.bytesIn += int64(len(b.Body))
		if e, ok := t.sess.(session.Expirer); ok {
			e.Expire("the agent's token expired: reconnect with a fresh token", &t.out)
		}
	} else if fromClient {
		t.bytesIn += int64(len(b.Body))
		err = t.sess.FromClient(b.Body, &t.out)
	} else {
		err = t.sess.FromServer(b.Body, &t.out)
	}
	if err != nil {
		// The session has queued its protocol error and hang-up; deliver them.
		t.log.Warn("protocol error", "from_client", fromClient, "err", err)
	}
	if t.out.Hold != "" {
		go t.await(t.out.Hold)
	}
	eos := b.EndOfStream
	if t.trace != nil {
		ev := TraceEvent{FromClient: fromClient, Data: b.Body, EOS: eos, ToServer: t.out.ToServer, ToClient: t.out.ToClient}
		if t.out.Sensitive {
			ev.ToServer, ev.Redacted = nil, true // a brokered login's credentials
		}
		if err != nil {
			ev.Err = err.Error()
		}
		t.trace.write(ev)
	}
	if len(t.out.ToServer) > 0 || (fromClient && eos) {
		if err := t.sendBody(true, t.out.ToServer, fromClient && eos); err != nil {
			return err
		}
	}
	t.bytesOut += int64(len(t.out.ToClient))
	if len(t.out.ToClient) > 0 || (!fromClient && eos) {
		if !t.clientOpen {
			t.pendingClient = append(t.pendingClient, t.out.ToClient...)
			return nil
		}
		if err := t.sendBody(false, t.out.ToClient, !fromClient && eos); err != nil {
			return err
		}
	}
	return nil
}

// sendBody sends bytes toward the server (toServer) or the client.
func (t *tunnel) sendBody(toServer bool, data []byte, eos bool) error {
	if (toServer && t.reqDone) || (!toServer && t.respDone) {
		return nil // that direction is closed; Envoy would reject the reply
	}
	// The stream may hold on to data after Send returns only as encoded bytes,
	// so the session's reusable buffer can be passed as is.
	body := &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{
		BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{
			StreamedResponse: &extprocv3.StreamedBodyResponse{Body: data, EndOfStream: eos},
		}},
	}}
	var resp *extprocv3.ProcessingResponse
	if toServer {
		resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: body}}
		t.reqDone = eos
	} else {
		resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: body}}
		t.respDone = eos
	}
	return t.send(resp)
}

func (t *tunnel) send(resp *extprocv3.ProcessingResponse) error {
	if err := t.stream.Send(resp); err != nil {
		return fmt.Errorf("cannot send to envoy: %w", err)
	}
	return nil
}

func (t *tunnel) stopTimer() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.timer != nil {
		t.timer.Stop()
	}
}

// expire ends the session when the agent's token expires: the client gets
// a clear protocol error, the database a hang-up, and the agent must
// reconnect with a fresh token.
func (t *tunnel) expire() {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.sess.(session.Expirer)
	if !ok {
		return
	}
	if t.bytesIn == 0 {
		// Envoy takes no reply toward the database before the client's first
		// bytes: the session ends when they come.
		t.expired = true
		return
	}
	t.log.Info("token expired; ending the session")
	t.out.Reset()
	e.Expire("the agent's token expired: reconnect with a fresh token", &t.out)
	t.sendOut("the token's expiry")
}

// sendOut sends both ways what the session wrote outside a body message
// (an expiry, a decided hold).
func (t *tunnel) sendOut(what string) {
	if len(t.out.ToServer) > 0 {
		if err := t.sendBody(true, t.out.ToServer, false); err != nil {
			t.log.Warn("cannot send to the database", "what", what, "err", err)
		}
	}
	if len(t.out.ToClient) > 0 && t.clientOpen {
		if err := t.sendBody(false, t.out.ToClient, false); err != nil {
			t.log.Warn("cannot send to the client", "what", what, "err", err)
		}
	}
}

// Ask implements session.Approvals for the tunnel's agent and target.
func (t *tunnel) Ask(r session.HoldRequest) session.Ticket {
	svc := t.srv.cfg.Approvals
	fp := policy.Fingerprint(t.target.Protocol, r.SQL)
	ctx, cancel := context.WithTimeout(t.ctx, 5*time.Second)
	defer cancel()
	if g, err := svc.Grant(ctx, t.ident.Subject, t.target.Name, r.SQL, fp); err != nil {
		t.log.Error("approval store unavailable; statement refused", "err", err)
		return session.Ticket{Message: "approval required, and the approval service is unavailable: " + err.Error()}
	} else if g != nil {
		return session.Ticket{ID: g.ID, Granted: true}
	}
	async := slices.ContainsFunc(t.ident.Groups, func(g string) bool { return slices.Contains(t.srv.cfg.AsyncGroups, g) })
	req := &approval.Request{
		Agent: t.ident.Subject, ActingFor: t.ident.ActingFor, Target: t.target.Name, Session: t.id,
		Statement: r.SQL, TextHash: approval.TextHash(r.SQL), Fingerprint: fp, Policies: r.Policies, Reason: r.Reason, Mode: "hold",
	}
	if async {
		req.Mode = "async"
	}
	if err := svc.Submit(ctx, req); err != nil {
		t.log.Error("cannot record approval request; statement refused", "err", err)
		return session.Ticket{Message: "approval required, and the approval service is unavailable: " + err.Error()}
	}
	if async {
		return session.Ticket{ID: req.ID, Message: fmt.Sprintf("%s: approval pending, request %s; resubmit the statement once a human approves it", r.Reason, req.ID)}
	}
	if isPauseHold(r) {
		t.pauseHold = req.ID // a resume approves it
	}
	return session.Ticket{ID: req.ID, Hold: true}
}

// await waits for the decision on a held statement and resumes the session.
func (t *tunnel) await(id string) {
	r, err := t.srv.cfg.Approvals.Wait(t.ctx, id)
	v := session.Verdict{ID: id}
	switch {
	case err != nil && errors.Is(context.Cause(t.ctx), errShutdown):
		v.Fatal = true
		v.Message = fmt.Sprintf("sluice is restarting while approval request %s was pending; it stays pending: once it is approved, reconnect and resubmit the statement", id)
	case err != nil && t.ctx.Err() != nil:
		return // the tunnel is gone; the request stays pending
	case err != nil:
		v.Message = fmt.Sprintf("approval request %s failed: %v", id, err)
	case r.Status == approval.Approved:
		v.Approved = true
	case r.Status == approval.Denied:
		v.Message = fmt.Sprintf("approval request %s was denied by %s", id, r.DecidedBy)
		if r.Comment != "" {
			v.Message += ": " + r.Comment
		}
	case r.Status == approval.Expired:
		v.Message = fmt.Sprintf("approval request %s timed out after %s without a decision", id, t.srv.cfg.Approvals.Timeout())
	default:
		v.Message = fmt.Sprintf("approval request %s is %s", id, r.Status)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pauseHold == id {
		t.pauseHold = ""
	}
	res, ok := t.sess.(session.Resumer)
	if !ok {
		return
	}
	t.log.Info("approval decided", "approval", id, "approved", v.Approved, "reason", v.Message)
	t.out.Reset()
	res.Resume(v, &t.out)
	if t.out.Hold != "" {
		go t.await(t.out.Hold)
	}
	t.sendOut("the held statement's outcome")
}

// audit appends an event to the session's chain. A failing sink is
// logged: statements were already decided and answered.
func (t *tunnel) audit(e audit.Event) {
	t.auditWith(auditWork{e: e})
}

// auditWork is one queued event. A statement's text (sql) is normalized
// off the data path, unless keep says the target's trail keeps literals.
// A value, not a closure: the queue holds it without an allocation per
// statement.
type auditWork struct {
	t         *tunnel
	chain     *audit.Chain
	e         audit.Event
	statement bool
	sql       string
	keep      bool
}

func (w *auditWork) do() {
	if w.statement {
		shape := w.t.memoSQL(w.sql)
		w.e.Statement, w.e.Fingerprint = shape[0], shape[1]
		if w.keep {
			w.e.Statement = w.sql
		}
	}
	if _, err := w.chain.Append(w.e); err != nil {
		w.t.log.Error("cannot write audit event", "kind", w.e.Kind, "err", err)
	}
}

// auditWith queues w's event, completed with the session's identity.
func (t *tunnel) auditWith(w auditWork) {
	if t.chain == nil {
		return
	}
	e := &w.e
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	e.Session, e.Agent, e.ActingFor, e.Target = t.id, t.ident.Subject, t.ident.ActingFor, t.target.Name
	w.t, w.chain = t, t.chain
	t.srv.enqueueAudit(w)
}

// RecordsResults implements session.Observer: rows are kept for the audit
// trail's recordings only.
func (t *tunnel) RecordsResults() bool { return t.chain != nil }

// Statement implements session.Observer: one audit event per statement,
// its literals redacted unless the target's audit_literals tag says keep.
func (t *tunnel) Statement(r session.StatementRecord) {
	t.countStatement(r.Outcome, r.End.Sub(r.Start).Seconds())
	t.guardStatement(r)
	if r.Outcome == "deny" && slices.Contains(r.Policies, policy.GuardrailsPolicy) {
		instruments.guardrails.Add(t.ctx, 1, metric.WithAttributes(attribute.String("sluice.target", t.target.Name), attribute.String("sluice.guardrail", "refusal")))
	}
	if t.span.IsRecording() {
		t.statementSpan(r, t.normalize(r.SQL)) // spans never carry literals
	}
	if t.chain == nil {
		return
	}
	t.auditWith(auditWork{e: audit.Event{
		Kind: audit.KindStatement, Time: r.Start.UTC(),
		Decision: r.Outcome, Reason: r.Reason, Policies: r.Policies, Masked: r.Masked, Rows: r.Rows,
		LatencyMS: float64(r.End.Sub(r.Start).Microseconds()) / 1000, Error: r.Error, Result: recorded(r.Result),
	}, statement: true, sql: r.SQL, keep: t.target.Tags["audit_literals"] == "keep"})
}

func recorded(r *session.Result) *audit.Result {
	if r == nil {
		return nil
	}
	return &audit.Result{Columns: r.Columns, Rows: r.Rows, Truncated: r.Truncated}
}

func (t *tunnel) closeAudit() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.chain != nil {
		t.audit(audit.Event{Kind: audit.KindSessionClose, BytesIn: t.bytesIn, BytesOut: t.bytesOut})
		t.chain = nil
	}
}

var tracer = otel.Tracer("github.com/sluicedb/sluice/extproc")

// normalize is the statement's text with literals redacted.
func (t *tunnel) normalize(sql string) string {
	return t.memoSQL(sql)[0]
}

// memoSQL is the statement's normalized text and fingerprint. They take
// parsing again; sessions repeat their statements, so the results are kept
// (a few hundred per tunnel, and per shape in policy.Shapes).
func (t *tunnel) memoSQL(sql string) [2]string {
	t.memoMu.Lock()
	defer t.memoMu.Unlock()
	if v, ok := t.sqlMemo[sql]; ok {
		return v
	}
	if t.sqlMemo == nil || len(t.sqlMemo) >= 512 {
		t.sqlMemo = map[string][2]string{}
	}
	norm, fp := t.shapes.Shape(t.target.Protocol, sql)
	v := [2]string{norm, fp}
	t.sqlMemo[sql] = v
	return v
}

func dbSystem(protocol string) string {
	if protocol == "postgres" {
		return "postgresql"
	}
	return protocol
}

// statementSpan records a statement as a child of the session's span,
// following OpenTelemetry's database conventions.
func (t *tunnel) statementSpan(r session.StatementRecord, text string) {
	if t.span == nil || !t.span.IsRecording() {
		return
	}
	op := ""
	if f := strings.Fields(r.SQL); len(f) > 0 {
		op = strings.ToUpper(f[0])
	}
	_, sp := tracer.Start(t.spanCtx, op, trace.WithSpanKind(trace.SpanKindInternal), trace.WithTimestamp(r.Start), trace.WithAttributes(
		attribute.String("db.system.name", dbSystem(t.target.Protocol)),
		attribute.String("db.operation.name", op),
		attribute.String("db.query.text", text),
		attribute.String("db.namespace", t.target.Database),
		attribute.String("sluice.decision", r.Outcome),
		attribute.StringSlice("sluice.policies", r.Policies),
		attribute.StringSlice("sluice.masked_columns", r.Masked),
		attribute.Int64("db.response.returned_rows", r.Rows),
	))
	if tables := r.Tables; len(tables) > 0 {
		sp.SetAttributes(attribute.String("db.collection.name", strings.Join(tables, ",")))
	}
	if r.Error != "" {
		sp.SetStatus(codes2.Error, r.Error)
	}
	sp.End(trace.WithTimestamp(r.End))
}

func (t *tunnel) endSpan() {
	if t.span != nil {
		t.span.End()
		instruments.sessions.Add(context.Background(), -1, metric.WithAttributes(attribute.String("sluice.target", t.target.Name)))
		instruments.bytes.Add(context.Background(), t.bytesIn, metric.WithAttributes(attribute.String("sluice.target", t.target.Name), attribute.String("sluice.direction", "from_client")))
		instruments.bytes.Add(context.Background(), t.bytesOut, metric.WithAttributes(attribute.String("sluice.target", t.target.Name), attribute.String("sluice.direction", "to_client")))
	}
}

// metadataCarrier reads gRPC metadata as a propagation carrier.
type metadataCarrier metadata.MD

func (m metadataCarrier) Get(k string) string {
	if v := metadata.MD(m).Get(k); len(v) > 0 {
		return v[0]
	}
	return ""
}
func (m metadataCarrier) Set(k, v string) { metadata.MD(m).Set(k, v) }
func (m metadataCarrier) Keys() []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
