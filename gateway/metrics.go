package main

// Prometheus metrics of the gateway: HTTP requests by method and status code with their duration, and
// every call to GPO by gRPC method and status code. Served on -metrics-addr, apart from the API port, so
// that /metrics is never reachable where the API is published.

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

var (
	metricsRegistry = prometheus.NewRegistry()
	httpRequests    = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gpo_gateway_http_requests_total",
		Help: "HTTP requests answered, by method and status code.",
	}, []string{"method", "code"})
	httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "gpo_gateway_http_request_duration_seconds",
		Help: "Time to answer an HTTP request (a watch lasts as long as its stream), by method.",
		// Uploads of large batches take minutes; reads take milliseconds.
		Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300},
	}, []string{"method"})
	backendCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gpo_gateway_backend_calls_total",
		Help: "gRPC calls to GPO, by method and status code.",
	}, []string{"method", "code"})
)

func init() {
	metricsRegistry.MustRegister(httpRequests, httpDuration, backendCalls,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// statusRecorder keeps the status code a handler wrote; Flush passes through for streamed answers.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func withMetrics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		started := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, req)
		method := knownMethod(req.Method)
		httpRequests.WithLabelValues(method, strconv.Itoa(rec.code)).Inc()
		httpDuration.WithLabelValues(method).Observe(time.Since(started).Seconds())
	})
}

// knownMethod bounds the label's values: any other method string a client sends counts as OTHER.
func knownMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodHead, http.MethodOptions:
		return m
	}
	return "OTHER"
}

func unaryMetrics(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	backendCalls.WithLabelValues(method, status.Code(err).String()).Inc()
	return err
}

// A stream is counted when it opens (its code is that of opening it).
func streamMetrics(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	stream, err := streamer(ctx, desc, cc, method, opts...)
	backendCalls.WithLabelValues(method, status.Code(err).String()).Inc()
	return stream, err
}

// serveMetrics serves /metrics on addr until ctx ends; "" serves nothing.
func serveMetrics(ctx context.Context, addr string) error {
	if addr == "" {
		return nil
	}
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(metricsRegistry, promhttp.HandlerOpts{}))
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	slog.Info("gpo-gateway metrics", "listen", listener.Addr().String())
	go func() {
		if err := server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("metrics server", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		_ = server.Close()
	}()
	return nil
}
