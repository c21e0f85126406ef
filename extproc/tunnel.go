package extproc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicedb/sluice/audit"
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/guard"
	"github.com/sluicedb/sluice/policy"
)

// tunnel is the state of one stream. mu serializes the stream loop and the
// token-expiry timer, which both use the session and send on the stream.
type tunnel struct {
	// decisionAttrs are the metric attributes of each decision.
	decisionAttrs map[string]metric.MeasurementOption
	// bodies are the responses sendBody fills, one per direction: Send
	// encodes a message before it returns, so they are reused.
	bodies [2]bodyResponse
	ctx    context.Context // ends with the stream or the server
	id     string          // the session's id (random; logs also carry Envoy's x-request-id)
	ident  session.Identity
	target session.Target
	mu     sync.Mutex
	timer  *time.Timer
	srv    *Server
	stream extprocv3.ExternalProcessor_ProcessServer
	log    *slog.Logger
	sess   session.Session
	auth   *policy.Authorizer
	out    session.Output

	chain         *audit.Chain
	span          trace.Span // the session's span; statements are its children
	memoMu        sync.Mutex // the audit worker and the data path (spans) share the memo
	sqlMemo       map[string][2]string
	guard         *guard.Session
	shapes        policy.Shapes
	spanCtx       context.Context
	bytesIn       int64  // from the client
	bytesOut      int64  // to the client
	clientOpen    bool   // response headers answered: bytes may go to the client
	pendingClient []byte // bytes for the client before it was open
	reqDone       bool   // end_of_stream sent toward the server
	expired       bool   // the token expired before the client's first bytes
	respDone      bool   // end_of_stream sent toward the client
	// refusedProtocol: the target's protocol, named in a refusal once known.
	refusedProtocol string
	// envoyReply: the response is Envoy's own (no tunnel), passed through.
	envoyReply  bool
	trace       *traceFile
	ack         auditAck // durable mode: events awaiting their commit
	auditFailed bool     // durable mode: a commit failed; the session ended
}

func (t *tunnel) handle(req *extprocv3.ProcessingRequest) (done bool, err error) {
	switch r := req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return t.requestHeaders(req, r.RequestHeaders)
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		// The 200 names the target's protocol, so the connector knows how
		// to speak to the client (answer SSLRequest, show refusals).
		var hr extprocv3.HeadersResponse
		if t.target.Protocol != "" {
			hr.Response = &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{protocolHeader(t.target.Protocol)}}}
		}
		if err := t.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
			ResponseHeaders: &hr}}); err != nil {
			return false, fmt.Errorf("cannot answer response headers: %w", err)
		}
		t.clientOpen = true
		if status := headerValue(r.ResponseHeaders, ":status"); status != "200" && t.sess != nil {
			// Envoy's own reply (the database refused the TCP connection,
			// 503 "upstream connect error…"): its body is text for the
			// connector, not the database's protocol.
			t.log.Warn("tunnel not opened by the upstream", "status", status)
			t.envoyReply = true
			t.pendingClient = nil
			return false, nil
		}
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
	var claims []string
	for _, hv := range h.GetHeaders().GetHeaders() {
		v := hv.Value
		if v == "" {
			v = string(hv.RawValue)
		}
		headers[hv.Key] = v
		if hv.Key == ClaimsHeader {
			claims = append(claims, v)
		}
	}
	t.log = t.log.With("request_id", headers["x-request-id"])
	if headers[":method"] != "CONNECT" {
		return true, t.refuse(typev3.StatusCode_MethodNotAllowed, "sluice carries database tunnels: use CONNECT")
	}
	c := &t.srv.cfg
	id, err := identityFrom(claims, tokenRules{groupsKey: c.GroupsKey, audiences: c.Audiences, maxTTL: c.MaxTTL, skew: c.ClockSkew})
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
	t.refusedProtocol = target.Protocol
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
	// The session's id is sluice's own: a client can set the request id
	// Envoy forwards, and two sessions under one id would share a pause,
	// an audit chain and a console page.
	t.id, t.ident, t.target = newSessionID(), id, target
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
		var sink audit.Sink = t.srv.cfg.Audit
		if t.srv.cfg.AuditSync {
			sink = &t.srv.collected
		}
		t.chain = audit.NewChain(sink)
		t.audit(audit.Event{Kind: audit.KindSessionOpen, Groups: id.Groups, Instance: t.srv.cfg.Instance,
			Client: map[string]string{"source": headers["x-forwarded-for"], "user_agent": headers["user-agent"]}})
	}
	instruments.sessions.Add(t.ctx, 1, metric.WithAttributes(attribute.String("sluice.target", target.Name)))
	var obs session.Observer = t
	t.sess, t.auth = newSession(target, auth, appr, obs, t.log), auth
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
	headers := []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "content-type", RawValue: []byte("text/plain")}}}
	if t.refusedProtocol != "" {
		headers = append(headers, protocolHeader(t.refusedProtocol))
	}
	return t.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: code},
			Body:    []byte(msg + "\n"),
			Details: "sluice_refused",
			Headers: &extprocv3.HeaderMutation{SetHeaders: headers},
		}}})
}

// protocolHeader names the target's wire protocol to the connector.
func protocolHeader(protocol string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "x-sluice-protocol", RawValue: []byte(protocol)}}
}

func (t *tunnel) body(fromClient bool, b *extprocv3.HttpBody) error {
	if t.envoyReply {
		if fromClient {
			return t.sendBody(true, nil, b.EndOfStream)
		}
		return t.sendBody(false, b.Body, b.EndOfStream)
	}
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
	sent := len(t.out.ToServer)
	if t.releaseToClient(); len(t.out.ToServer) > sent {
		// The trail failed: the session's hang-up for the database.
		if err := t.sendBody(true, t.out.ToServer[sent:], false); err != nil {
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
	b := &t.bodies[0]
	if toServer {
		t.reqDone = eos
	} else {
		b = &t.bodies[1]
		t.respDone = eos
	}
	return t.send(b.set(toServer, data, eos))
}

// bodyResponse is a streamed body response, allocated once.
type bodyResponse struct {
	resp     extprocv3.ProcessingResponse
	req      extprocv3.ProcessingResponse_RequestBody
	res      extprocv3.ProcessingResponse_ResponseBody
	body     extprocv3.BodyResponse
	common   extprocv3.CommonResponse
	mutation extprocv3.BodyMutation
	streamed extprocv3.BodyMutation_StreamedResponse
	chunk    extprocv3.StreamedBodyResponse
}

func (b *bodyResponse) set(toServer bool, data []byte, eos bool) *extprocv3.ProcessingResponse {
	b.chunk.Body, b.chunk.EndOfStream = data, eos
	b.streamed.StreamedResponse = &b.chunk
	b.mutation.Mutation = &b.streamed
	b.common.BodyMutation = &b.mutation
	b.body.Response = &b.common
	if toServer {
		b.req.RequestBody = &b.body
		b.resp.Response = &b.req
	} else {
		b.res.ResponseBody = &b.body
		b.resp.Response = &b.res
	}
	return &b.resp
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
	t.releaseToClient()
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

// headerValue is one header of h ("" if absent).
func headerValue(h *extprocv3.HttpHeaders, key string) string {
	for _, hv := range h.GetHeaders().GetHeaders() {
		if hv.Key == key {
			if hv.Value != "" {
				return hv.Value
			}
			return string(hv.RawValue)
		}
	}
	return ""
}

// newSessionID is a random UUID (version 4).
func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
