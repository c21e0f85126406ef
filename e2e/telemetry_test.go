package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"

	"github.com/sluicedb/sluice/config"
	"github.com/sluicedb/sluice/devstack"
)

// otlpReceiver is an OTLP/gRPC collector in the test: traces, metrics, logs.
type otlpReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	mu      sync.Mutex
	spans   []recvSpan
	metrics map[string]bool
	logs    []string
}

type metricsReceiver struct {
	colmetricpb.UnimplementedMetricsServiceServer
	r *otlpReceiver
}

func (m metricsReceiver) Export(_ context.Context, req *colmetricpb.ExportMetricsServiceRequest) (*colmetricpb.ExportMetricsServiceResponse, error) {
	m.r.mu.Lock()
	defer m.r.mu.Unlock()
	for _, rm := range req.ResourceMetrics {
		for _, sm := range rm.ScopeMetrics {
			for _, x := range sm.Metrics {
				m.r.metrics[x.Name] = true
			}
		}
	}
	return &colmetricpb.ExportMetricsServiceResponse{}, nil
}

type logsReceiver struct {
	collogpb.UnimplementedLogsServiceServer
	r *otlpReceiver
}

func (l logsReceiver) Export(_ context.Context, req *collogpb.ExportLogsServiceRequest) (*collogpb.ExportLogsServiceResponse, error) {
	l.r.mu.Lock()
	defer l.r.mu.Unlock()
	for _, rl := range req.ResourceLogs {
		for _, sl := range rl.ScopeLogs {
			for _, x := range sl.LogRecords {
				l.r.logs = append(l.r.logs, x.Body.GetStringValue())
			}
		}
	}
	return &collogpb.ExportLogsServiceResponse{}, nil
}

type recvSpan struct {
	service string
	span    *tracepb.Span
}

func (r *otlpReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		svc := attr(rs.GetResource().GetAttributes(), "service.name")
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				r.spans = append(r.spans, recvSpan{svc, sp})
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func attr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.Key == key {
			if s := kv.Value.GetStringValue(); s != "" {
				return s
			}
			if a := kv.Value.GetArrayValue(); a != nil {
				var out []string
				for _, v := range a.Values {
					out = append(out, v.GetStringValue())
				}
				return strings.Join(out, ",")
			}
			return fmt.Sprint(kv.Value.GetIntValue())
		}
	}
	return ""
}

func (r *otlpReceiver) snapshot() []recvSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recvSpan(nil), r.spans...)
}

// Envoy's span for the tunnel and sluice's session and statement spans
// arrive at one OTLP receiver in one trace: the session span is the child
// of Envoy's, the statements the session's, with the database conventions'
// attributes and sluice's decision.
func TestTracesJoinEnvoy(t *testing.T) {
	ctx := context.Background()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	recv := &otlpReceiver{metrics: map[string]bool{}}
	g := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(g, recv)
	colmetricpb.RegisterMetricsServiceServer(g, metricsReceiver{r: recv})
	collogpb.RegisterLogsServiceServer(g, logsReceiver{r: recv})
	go g.Serve(l)
	defer g.Stop()

	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+l.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
	t.Setenv("OTEL_BLRP_SCHEDULE_DELAY", "200")
	t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "500")
	_, ext, _ := startServeCopy(t, "otel", "approvals-otel.db", 4*time.Minute, func(c *config.Config) {
		c.Audit.Store, c.Audit.OTLPLogs = "audit-otel.db", true
	})
	gw, err := stack.StartEnvoyWith(ctx, "envoy-otel", func(c *config.Config) {
		c.ExtProc.Address = ext
		c.Telemetry.OTLPEndpoint = l.Addr().String()
	})
	if err != nil {
		t.Fatal(err)
	}
	port, _ := devstack.FreePort()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if _, err := stack.StartConnectVia(ctx, "connect-otel", gw, devstack.DemoTarget, addr, tokenFor(t, "traced-agent", []string{"analysts"})); err != nil {
		t.Fatal(err)
	}
	out, _ := psql(t, stack.AgentURL(addr), "SELECT count(*) FROM orders WHERE id < 10", "SELECT email FROM customers WHERE id = 3", "DROP TABLE orders")
	if !strings.Contains(out, "no-ddl") {
		t.Fatalf("psql: %s", out)
	}
	var session, envoySpan *tracepb.Span
	var stmts []*tracepb.Span
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		session, envoySpan, stmts = nil, nil, nil
		spans := recv.snapshot()
		for _, s := range spans {
			if s.span.Name == "sluice.session" && attr(s.span.Attributes, "sluice.agent") == "traced-agent" {
				session = s.span
			}
		}
		if session == nil {
			continue
		}
		for _, s := range spans {
			switch {
			case s.service == "sluice-envoy" && string(s.span.SpanId) == string(session.ParentSpanId):
				envoySpan = s.span
			case string(s.span.ParentSpanId) == string(session.SpanId):
				stmts = append(stmts, s.span)
			}
		}
		if envoySpan != nil && len(stmts) == 3 {
			break
		}
	}
	if session == nil || envoySpan == nil || len(stmts) != 3 {
		t.Fatalf("spans: session %v, envoy parent %v, %d statements (of %d received)", session != nil, envoySpan != nil, len(stmts), len(recv.snapshot()))
	}
	if string(envoySpan.TraceId) != string(session.TraceId) {
		t.Fatal("not one trace")
	}
	// The ext_proc call's span is a child of Envoy's span for the tunnel.
	var tunnelSpan string
	for _, s := range recv.snapshot() {
		if s.service == "sluice-envoy" && string(s.span.SpanId) == string(envoySpan.ParentSpanId) && string(s.span.TraceId) == string(session.TraceId) {
			tunnelSpan = s.span.Name
		}
	}
	if tunnelSpan == "" {
		t.Fatal("no Envoy span for the tunnel above the ext_proc call")
	}
	byOp := map[string]*tracepb.Span{}
	for _, s := range stmts {
		byOp[attr(s.Attributes, "db.query.text")] = s
		if attr(s.Attributes, "db.system.name") != "postgresql" {
			t.Errorf("db.system.name: %v", s.Attributes)
		}
	}
	for text, want := range map[string]string{
		"SELECT count(*) FROM orders WHERE id < $1": "allow",
		"SELECT email FROM customers WHERE id = $1": "allow",
		"DROP TABLE orders":                         "deny",
	} {
		s := byOp[text]
		if s == nil {
			t.Errorf("no span with db.query.text %q (have %v)", text, keys(byOp))
			continue
		}
		if got := attr(s.Attributes, "sluice.decision"); got != want {
			t.Errorf("%s: decision %q", text, got)
		}
	}
	if m := attr(byOp["SELECT email FROM customers WHERE id = $1"].GetAttributes(), "sluice.masked_columns"); m != "email" {
		t.Errorf("masked columns: %q", m)
	}
	if c := attr(byOp["SELECT count(*) FROM orders WHERE id < $1"].GetAttributes(), "db.collection.name"); c != "public.orders" {
		t.Errorf("db.collection.name: %q", c)
	}
	if op := attr(byOp["DROP TABLE orders"].GetAttributes(), "db.operation.name"); op != "DROP" {
		t.Errorf("db.operation.name: %q", op)
	}
	if p := attr(byOp["DROP TABLE orders"].GetAttributes(), "sluice.policies"); p != "no-ddl" {
		t.Errorf("policies: %q", p)
	}
	// Metrics and the audit trail as OTLP logs reach the same collector.
	want := []string{"sluice.decisions", "sluice.statement.duration", "sluice.sessions.active"}
	var logged bool
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		recv.mu.Lock()
		ok := true
		for _, m := range want {
			ok = ok && recv.metrics[m]
		}
		logged = false
		for _, l := range recv.logs {
			logged = logged || (strings.Contains(l, `"kind":"statement"`) && strings.Contains(l, `"statement":"DROP TABLE orders"`) && strings.Contains(l, `"decision":"deny"`))
		}
		recv.mu.Unlock()
		if ok && logged {
			break
		}
	}
	recv.mu.Lock()
	for _, m := range want {
		if !recv.metrics[m] {
			t.Errorf("metric %s not received (have %v)", m, recv.metrics)
		}
	}
	if !logged {
		t.Errorf("no audit event as an OTLP log among %d records", len(recv.logs))
	}
	nlogs := len(recv.logs)
	recv.mu.Unlock()
	t.Logf("metrics received: %v; %d audit log records", want, nlogs)
	t.Logf("trace %x: envoy %q → envoy %q → sluice.session → %d statement spans %v", session.TraceId, tunnelSpan, envoySpan.Name, len(stmts), keys(byOp))

	// A MongoDB session's commands follow OpenTelemetry's MongoDB
	// conventions: the command's name, the collection, the database.
	mport, _ := devstack.FreePort()
	maddr := fmt.Sprintf("127.0.0.1:%d", mport)
	if _, err := stack.StartConnectVia(ctx, "connect-otel-mongo", gw, devstack.DemoMongoTarget, maddr, tokenFor(t, "traced-mongo", []string{"analysts"})); err != nil {
		t.Fatal(err)
	}
	if out, err := pymongo(t, stack.MongoURI(maddr), `try_("find", lambda: db.orders.find_one({"_id": 5}))`); err != nil || !strings.Contains(out, "find OK") {
		t.Fatalf("pymongo: %v %s", err, out)
	}
	var found *tracepb.Span
	for deadline := time.Now().Add(20 * time.Second); found == nil && time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		for _, s := range recv.snapshot() {
			if attr(s.span.Attributes, "db.system.name") == "mongodb" && attr(s.span.Attributes, "db.operation.name") == "find" {
				found = s.span
			}
		}
	}
	if found == nil {
		t.Fatal("no span for the MongoDB find")
	}
	if c, ns := attr(found.Attributes, "db.collection.name"), attr(found.Attributes, "db.namespace"); c != "orders" || ns != "sluice_demo" {
		t.Errorf("MongoDB span: collection %q, namespace %q", c, ns)
	}
	t.Logf("MongoDB span %q: db.query.text %s", found.Name, attr(found.Attributes, "db.query.text"))
}

func keys(m map[string]*tracepb.Span) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
