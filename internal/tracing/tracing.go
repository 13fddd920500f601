// Package tracing sets up OpenTelemetry tracing from the standard OTEL_*
// environment variables. Tracing is off unless an OTLP endpoint is
// configured; then ingest requests, the router's dispatch of each event and,
// through Temporal's OpenTelemetry interceptor, the workflows it starts are
// spans of one trace.
package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.temporal.io/sdk/contrib/opentelemetry"
	"go.temporal.io/sdk/interceptor"
)

// TracerName names the tracer of Herald's spans.
const TracerName = "github.com/herald-run/herald"

// Enabled reports whether the environment asks for traces: an OTLP endpoint
// is set (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT),
// and neither OTEL_SDK_DISABLED=true nor OTEL_TRACES_EXPORTER=none says no.
func Enabled() bool {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") || strings.EqualFold(os.Getenv("OTEL_TRACES_EXPORTER"), "none") {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup installs the global tracer provider and the W3C trace-context
// propagator when Enabled, exporting with OTLP over HTTP (the exporter reads
// the standard OTEL_EXPORTER_OTLP_* variables; OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES name the service, default "herald"). It returns
// the function that flushes and stops the exporter, and whether tracing is on.
func Setup(ctx context.Context, log *slog.Logger) (shutdown func(context.Context) error, on bool, err error) {
	noop := func(context.Context) error { return nil }
	if !Enabled() {
		return noop, false, nil
	}
	if p := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"); p == "grpc" || p == "" && os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL") == "grpc" {
		log.Warn("OTLP over gRPC is not supported; exporting traces with OTLP over HTTP (http/protobuf): point the endpoint at the collector's HTTP port (4318)")
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return noop, false, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res, err := resource.Merge(
		resource.NewSchemaless(attribute.String("service.name", "herald")),
		resource.Environment(),
	)
	if err != nil {
		return noop, false, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	log.Info("OpenTelemetry tracing on", "exporter", "otlp/http")
	return tp.Shutdown, true, nil
}

// Tracer returns Herald's tracer (a no-op one while tracing is off).
func Tracer() trace.Tracer { return otel.Tracer(TracerName) }

// TemporalInterceptor returns Temporal's OpenTelemetry interceptor, which
// carries the current span into the workflows a client starts and makes
// spans of workflows and activities on workers. Add it to client.Options
// Interceptors on Herald's client and on workers' clients.
func TemporalInterceptor() (interceptor.Interceptor, error) {
	return opentelemetry.NewTracingInterceptor(opentelemetry.TracerOptions{Tracer: otel.Tracer("go.temporal.io/sdk")})
}

// Traceparent returns the W3C traceparent of the span in ctx, or "" when
// there is none.
func Traceparent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	return carrier["traceparent"]
}

// FromTraceparent returns ctx carrying the remote span a traceparent names
// (ctx unchanged when tp is empty or invalid).
func FromTraceparent(ctx context.Context, tp string) context.Context {
	if tp == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": tp})
}
