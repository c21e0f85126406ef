package audit

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/log/global"
)

// OTLPLogs emits each event as an OpenTelemetry log record (body: the
// event's JSON; attributes: session, kind, agent, target, decision) through
// the global logger provider, which telemetry.Setup points at OTLP.
type OTLPLogs struct{ logger otellog.Logger }

// NewOTLPLogs returns the sink.
func NewOTLPLogs() *OTLPLogs {
	return &OTLPLogs{logger: global.GetLoggerProvider().Logger("github.com/sluicedb/sluice/audit")}
}

// Write implements Sink.
func (o *OTLPLogs) Write(e Event) error {
	b := e.JSON()
	var r otellog.Record
	r.SetTimestamp(e.Time)
	r.SetEventName("sluice." + e.Kind)
	r.SetSeverity(otellog.SeverityInfo)
	if e.Decision != "" && e.Decision != "allow" {
		r.SetSeverity(otellog.SeverityWarn)
	}
	r.SetBody(attribute.StringValue(string(b)))
	r.AddAttributes(
		attribute.String("sluice.session", e.Session),
		attribute.String("sluice.event", e.Kind),
		attribute.String("sluice.agent", e.Agent),
		attribute.String("sluice.target", e.Target),
		attribute.String("sluice.decision", e.Decision),
		attribute.Int64("sluice.seq", e.Seq),
	)
	o.logger.Emit(context.Background(), r)
	return nil
}
