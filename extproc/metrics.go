package extproc

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// instruments are sluice's metrics (no-ops unless telemetry is configured).
var instruments = func() (m struct {
	decisions  metric.Int64Counter
	duration   metric.Float64Histogram
	sessions   metric.Int64UpDownCounter
	bytes      metric.Int64Counter
	guardrails metric.Int64Counter
}) {
	meter := otel.Meter("github.com/sluicedb/sluice/extproc")
	m.decisions, _ = meter.Int64Counter("sluice.decisions", metric.WithDescription("statements decided, by decision"))
	m.duration, _ = meter.Float64Histogram("sluice.statement.duration", metric.WithUnit("s"),
		metric.WithDescription("statement arrival at sluice to completion"),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60))
	m.sessions, _ = meter.Int64UpDownCounter("sluice.sessions.active", metric.WithDescription("open tunnels"))
	m.guardrails, _ = meter.Int64Counter("sluice.guardrails", metric.WithDescription("guardrail trips: pauses and refusals, by guardrail"))
	m.bytes, _ = meter.Int64Counter("sluice.bytes", metric.WithUnit("By"), metric.WithDescription("tunnel bytes, by direction"))
	return m
}()

func (t *tunnel) countStatement(decision string, seconds float64) {
	// The attribute set is built once per decision and tunnel, not per
	// statement.
	attrs, ok := t.decisionAttrs[decision]
	if !ok {
		attrs = metric.WithAttributeSet(attribute.NewSet(attribute.String("sluice.target", t.target.Name), attribute.String("sluice.decision", decision)))
		if t.decisionAttrs == nil {
			t.decisionAttrs = map[string]metric.MeasurementOption{}
		}
		t.decisionAttrs[decision] = attrs
	}
	instruments.decisions.Add(context.Background(), 1, attrs)
	instruments.duration.Record(context.Background(), seconds, attrs)
}
