package extproc_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/jackc/pgx/v5/pgproto3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/extproc"
	"github.com/sluicedb/sluice/extproc/postgres"
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

type targets map[string]session.Target

func (t targets) Target(n string) (session.Target, bool) { v, ok := t[n]; return v, ok }

// These tests replay the messages Envoy sends over a real in-process gRPC
// stream. They complement the end-to-end tests, which run the real Envoy.
func startServer(t *testing.T) extprocv3.ExternalProcessorClient {
	t.Helper()
	set, err := cedar.Default()
	if err != nil {
		t.Fatal(err)
	}
	srv := extproc.NewServer(extproc.Config{
		Targets: targets{
			"demo":   {Name: "demo", Protocol: "postgres"},
			"locked": {Name: "locked", Protocol: "postgres", Logins: []session.Login{{Groups: []string{"migrators"}, User: "owner"}}},
		},
		Policy: policy.NewEngine(set),
		Protocols: map[string]extproc.NewSessionFunc{"postgres": func(tg session.Target, a *policy.Authorizer, _ session.Approvals, _ session.Observer, l *slog.Logger) session.Session {
			return postgres.NewSession(postgres.Config{Target: tg, Authorizer: a, Logger: l})
		}},
		GroupsKey: "groups", Audiences: []string{"sluice"},
		MaxTTL: time.Hour, ClockSkew: 30 * time.Second,
	})
	c, _ := dial(t, srv)
	return c
}

// dial serves srv over an in-process gRPC connection; stop (also run at
// cleanup) closes both ends.
func dial(tb testing.TB, srv extprocv3.ExternalProcessorServer) (c extprocv3.ExternalProcessorClient, stop func()) {
	tb.Helper()
	l := bufconn.Listen(1 << 20)
	g := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(g, srv)
	go g.Serve(l)
	conn, err := grpc.NewClient("passthrough:///buf", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }))
	if err != nil {
		g.Stop()
		tb.Fatal(err)
	}
	stop = func() {
		conn.Close()
		g.Stop()
	}
	tb.Cleanup(stop)
	return extprocv3.NewExternalProcessorClient(conn), stop
}

func headers(authority string, claims map[string]any) *extprocv3.ProcessingRequest {
	req := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
		Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: ":method", RawValue: []byte("CONNECT")}, {Key: ":authority", RawValue: []byte(authority)},
		}},
	}}}
	if claims != nil {
		if _, ok := claims["aud"]; !ok {
			claims["aud"] = []any{"other", "sluice"}
		}
		if _, ok := claims["exp"]; !ok {
			claims["exp"] = float64(time.Now().Add(30 * time.Minute).Unix())
		}
		for k, v := range claims {
			if v == nil {
				delete(claims, k)
			}
		}
		// As jwt_authn's forward_payload_header sets it.
		payload, _ := json.Marshal(claims)
		hm := req.GetRequestHeaders().Headers
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: extproc.ClaimsHeader, RawValue: []byte(base64.RawURLEncoding.EncodeToString(payload))})
	}
	return req
}

func open(t *testing.T, c extprocv3.ExternalProcessorClient) extprocv3.ExternalProcessor_ProcessClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	st, err := c.Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func roundTrip(t testing.TB, st extprocv3.ExternalProcessor_ProcessClient, req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	t.Helper()
	if err := st.Send(req); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestRefusedAtHeaders(t *testing.T) {
	c := startServer(t)
	for name, tc := range map[string]struct {
		req  *extprocv3.ProcessingRequest
		code typev3.StatusCode
	}{
		"no identity":    {headers("demo", nil), typev3.StatusCode_Unauthorized},
		"unknown target": {headers("other:5432", map[string]any{"sub": "a", "groups": []any{"analysts"}}), typev3.StatusCode_NotFound},
		"no connect":     {headers("demo", map[string]any{"sub": "a", "groups": []any{"strangers"}}), typev3.StatusCode_Forbidden},
		"bad groups":     {headers("demo", map[string]any{"sub": "a", "groups": 7.0}), typev3.StatusCode_Unauthorized},
		"wrong audience": {headers("demo", map[string]any{"sub": "a", "groups": []any{"analysts"}, "aud": "other"}), typev3.StatusCode_Unauthorized},
		"no audience":    {headers("demo", map[string]any{"sub": "a", "groups": []any{"analysts"}, "aud": nil}), typev3.StatusCode_Unauthorized},
		"no db login":    {headers("locked", map[string]any{"sub": "a", "groups": []any{"analysts"}}), typev3.StatusCode_Forbidden},
		// Tokens must expire, within the cap, and are judged with Envoy's skew.
		"no exp":            {headers("demo", map[string]any{"sub": "a", "groups": []any{"analysts"}, "exp": nil}), typev3.StatusCode_Unauthorized},
		"expired past skew": {headers("demo", map[string]any{"sub": "a", "groups": []any{"analysts"}, "exp": float64(time.Now().Add(-time.Minute).Unix())}), typev3.StatusCode_Unauthorized},
		"lives too long":    {headers("demo", map[string]any{"sub": "a", "groups": []any{"analysts"}, "exp": float64(time.Now().Add(3 * time.Hour).Unix())}), typev3.StatusCode_Unauthorized},
		"exp not a number":  {headers("demo", map[string]any{"sub": "a", "groups": []any{"analysts"}, "exp": "tomorrow"}), typev3.StatusCode_Unauthorized},
	} {
		t.Run(name, func(t *testing.T) {
			resp := roundTrip(t, open(t, c), tc.req)
			ir := resp.GetImmediateResponse()
			if ir == nil || ir.Status.Code != tc.code {
				t.Fatalf("got %v, want immediate %v", resp, tc.code)
			}
		})
	}
}

// A token Envoy accepts within its clock skew is accepted by sluice too.
func TestTokenWithinSkewAccepted(t *testing.T) {
	c := startServer(t)
	exp := float64(time.Now().Add(-10 * time.Second).Unix())
	resp := roundTrip(t, open(t, c), headers("demo", map[string]any{"sub": "a", "groups": []any{"analysts"}, "exp": exp}))
	if resp.GetRequestHeaders() == nil {
		t.Fatalf("token expired 10 s ago, within the 30 s skew: %v", resp)
	}
}

func body(fromClient bool, b []byte, eos bool) *extprocv3.ProcessingRequest {
	hb := &extprocv3.HttpBody{Body: b, EndOfStream: eos}
	if fromClient {
		return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: hb}}
	}
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: hb}}
}

func TestTunnelFlow(t *testing.T) {
	st := open(t, startServer(t))
	if resp := roundTrip(t, st, headers("demo:5432", map[string]any{"sub": "a", "groups": []any{"analysts"}})); resp.GetRequestHeaders() == nil {
		t.Fatalf("headers: %v", resp)
	}
	// SSLRequest before the server has spoken: Envoy drops replies sent
	// toward the client before the server's first byte, so sluice asks the
	// server itself and passes on its answer.
	ssl, _ := (&pgproto3.SSLRequest{}).Encode(nil)
	resp := roundTrip(t, st, body(true, ssl, false))
	if got := resp.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetBody(); !bytes.Equal(got, ssl) {
		t.Fatalf("want the SSLRequest probe sent to the server, got %v", resp)
	}
	resp = roundTrip(t, st, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: status200()}})
	if resp.GetResponseHeaders() == nil {
		t.Fatalf("want the response headers answer, got %v", resp)
	}
	resp = roundTrip(t, st, body(false, []byte("N"), false))
	if got := resp.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetBody(); string(got) != "N" {
		t.Fatalf("SSL answer: %v", resp)
	}
	start, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "u"}}).Encode(nil)
	resp = roundTrip(t, st, body(true, start, false))
	// Forwarded with sluice's pinned settings after the client's own.
	if got := resp.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetBody(); !bytes.Contains(got, start[8:len(start)-1]) || !bytes.Contains(got, []byte("standard_conforming_strings\x00on\x00")) {
		t.Fatalf("startup not forwarded: %v", resp)
	}
	// The client's FIN must reach the server.
	resp = roundTrip(t, st, body(true, nil, true))
	if !resp.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetEndOfStream() {
		t.Fatalf("end of stream not forwarded: %v", resp)
	}
}

// status200 is the response headers Envoy sends when the upstream accepted
// the tunnel.
func status200() *extprocv3.HttpHeaders {
	return &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":status", RawValue: []byte("200")}}}}
}

// Envoy's own 503 (the database refused the TCP connection) reaches the
// connector as sent, not parsed as the database's protocol.
func TestEnvoyReplyPassedThrough(t *testing.T) {
	st := open(t, startServer(t))
	if resp := roundTrip(t, st, headers("demo:5432", map[string]any{"sub": "a", "groups": []any{"analysts"}})); resp.GetRequestHeaders() == nil {
		t.Fatalf("headers: %v", resp)
	}
	h503 := &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":status", RawValue: []byte("503")}}}}
	resp := roundTrip(t, st, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: h503}})
	if resp.GetResponseHeaders() == nil {
		t.Fatalf("response headers: %v", resp)
	}
	msg := []byte("upstream connect error or disconnect/reset before headers. reset reason: connection failure")
	resp = roundTrip(t, st, body(false, msg, true))
	if got := resp.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse(); !bytes.Equal(got.GetBody(), msg) || !got.GetEndOfStream() {
		t.Fatalf("Envoy's reply changed: %v", resp)
	}
}
