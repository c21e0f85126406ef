// Package telemetry configures OpenTelemetry from the standard OTEL_*
// environment variables: with an OTLP endpoint set
// (OTEL_EXPORTER_OTLP_ENDPOINT, or the per-signal *_TRACES_/_METRICS_/_LOGS_
// variants) traces, metrics and logs go out over OTLP/gRPC; otherwise the
// global providers stay no-ops.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"os"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/log/global"
	"go.opentelemetry.io/otel/propagation"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
)

func enabled(signal string) bool {
	if os.Getenv("OTEL_SDK_DISABLED") == "true" || os.Getenv("OTEL_"+signal+"_EXPORTER") == "none" {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT") != ""
}

// Setup installs the providers and the W3C propagator; the returned
// function flushes and stops them.
func Setup(ctx context.Context) (func(context.Context) error, error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	res := resource.Default()
	if os.Getenv("OTEL_SERVICE_NAME") == "" {
		if r, err := resource.Merge(res, resource.NewSchemaless(semconv.ServiceName("sluice"))); err == nil {
			res = r
		}
	}
	var stops []func(context.Context) error
	stop := func(ctx context.Context) error {
		var errs []error
		for _, s := range stops {
			errs = append(errs, s(ctx))
		}
		return errors.Join(errs...)
	}
	if enabled("TRACES") {
		exp, err := otlptracegrpc.New(ctx) // reads OTEL_EXPORTER_OTLP_*
		if err != nil {
			return nil, fmt.Errorf("cannot start the OTLP trace exporter: %w", err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)) // OTEL_BSP_*, OTEL_TRACES_SAMPLER
		otel.SetTracerProvider(tp)
		stops = append(stops, tp.Shutdown)
	}
	if enabled("METRICS") {
		exp, err := otlpmetricgrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("cannot start the OTLP metric exporter: %w", err)
		}
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)), sdkmetric.WithResource(res)) // OTEL_METRIC_EXPORT_INTERVAL
		otel.SetMeterProvider(mp)
		stops = append(stops, mp.Shutdown)
	}
	if enabled("LOGS") {
		exp, err := otlploggrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("cannot start the OTLP log exporter: %w", err)
		}
		lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewBatchProcessor(exp)), sdklog.WithResource(res))
		global.SetLoggerProvider(lp)
		stops = append(stops, lp.Shutdown)
	}
	return stop, nil
}
