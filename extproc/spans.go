package extproc

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	codes2 "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/sluicedb/sluice/extproc/session"
)

var tracer = otel.Tracer("github.com/sluicedb/sluice/extproc")

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
	namespace, tables := t.target.Database, r.Tables
	if t.target.Protocol == "mongodb" {
		// A command's name, and collections without their database (the
		// namespace), as OpenTelemetry's MongoDB conventions have them.
		op = ""
		if len(r.Kinds) > 0 {
			op = r.Kinds[0]
		}
		tables = nil
		for _, tb := range r.Tables {
			db, coll, _ := strings.Cut(tb, ".")
			namespace = db
			tables = append(tables, coll)
		}
	}
	_, sp := tracer.Start(t.spanCtx, op, trace.WithSpanKind(trace.SpanKindInternal), trace.WithTimestamp(r.Start), trace.WithAttributes(
		attribute.String("db.system.name", dbSystem(t.target.Protocol)),
		attribute.String("db.operation.name", op),
		attribute.String("db.query.text", text),
		attribute.String("db.namespace", namespace),
		attribute.String("sluice.decision", r.Outcome),
		attribute.StringSlice("sluice.policies", r.Policies),
		attribute.StringSlice("sluice.masked_columns", r.Masked),
		attribute.Int64("db.response.returned_rows", r.Rows),
	))
	if len(tables) > 0 {
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
