package main

// OpenTelemetry traces of the gateway, off unless an OTLP endpoint is configured: GPO_OTLP_ENDPOINT (an
// OTLP/HTTP base URL, as for gpo serve and gpo-sidecar) or the standard OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_TRACES_EXPORTER=otlp. When on, each HTTP request is a server
// span (the root of an upload's trace) and each call to GPO a client span whose W3C traceparent travels in
// the gRPC metadata, so gpo serve, the outbox relay and the sidecars continue the same trace.

import (
	"context"
	"net/http"
	"os"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"google.golang.org/grpc"
)

// tracingOn tells whether the environment asks for traces, and the exporter options that follow.
func tracingOn() (bool, []otlptracehttp.Option) {
	exporter := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")))
	if exporter == "none" || strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		return false, nil
	}
	if url := strings.TrimSpace(os.Getenv("GPO_OTLP_ENDPOINT")); url != "" {
		return true, []otlptracehttp.Option{otlptracehttp.WithEndpointURL(strings.TrimRight(url, "/") + "/v1/traces")}
	}
	// The exporter reads the standard variables itself.
	on := os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" ||
		os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || exporter == "otlp"
	return on, nil
}

// setupTracing installs the tracer provider when tracing is on; it returns the gRPC dial options and
// the HTTP middleware that trace, and a function that flushes the spans on the way out.
func setupTracing(ctx context.Context) ([]grpc.DialOption, func(http.Handler) http.Handler, func(context.Context) error, error) {
	on, options := tracingOn()
	if !on {
		return nil, func(h http.Handler) http.Handler { return h }, func(context.Context) error { return nil }, nil
	}
	exporter, err := otlptracehttp.New(ctx, options...)
	if err != nil {
		return nil, nil, nil, err
	}
	provider := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exporter),
		sdktrace.WithResource(resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName("gpo-gateway"))),
	)
	otel.SetTracerProvider(provider)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	middleware := func(h http.Handler) http.Handler {
		return otelhttp.NewHandler(h, "gpo-gateway", otelhttp.WithSpanNameFormatter(
			func(_ string, r *http.Request) string { return r.Method + " " + r.URL.Path }))
	}
	dial := []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler())}
	return dial, middleware, provider.Shutdown, nil
}
