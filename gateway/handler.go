package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	_ "google.golang.org/genproto/googleapis/rpc/errdetails" // so error details (ErrorInfo, BadRequest) render as JSON
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	gpov1gw "github.com/gpo-project/gpo/gateway/gen/gpo/v1"
)

// NewHandler is the REST API over conn: the generated DisbursementService routes and /healthz (the GPO
// server's gRPC health). Authorization headers reach GPO as "authorization" metadata.
func NewHandler(ctx context.Context, conn *grpc.ClientConn) (http.Handler, error) {
	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &jsonMarshaler{runtime.JSONPb{
			// lowerCamelCase names, enums by name, int64 as strings (proto3 JSON); zero values are
			// written so clients see every field, but unset messages are left out rather than null.
			MarshalOptions:   protojson.MarshalOptions{EmitDefaultValues: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
		}}),
		runtime.WithMarshalerOption(reportMIME, &reportMarshaler{runtime.HTTPBodyMarshaler{Marshaler: &runtime.JSONPb{}}}),
		runtime.WithIncomingHeaderMatcher(incomingHeader),
		runtime.WithOutgoingHeaderMatcher(outgoingHeader),
		runtime.WithRoutingErrorHandler(routingError),
		runtime.WithErrorHandler(errorHandler),
		runtime.WithStreamErrorHandler(streamErrorHandler),
		runtime.WithHealthzEndpoint(grpc_health_v1.NewHealthClient(conn)),
		runtime.WithForwardResponseOption(httpCode),
	)
	if err := gpov1gw.RegisterDisbursementServiceHandler(ctx, mux, conn); err != nil {
		return nil, err
	}
	if err := gpov1gw.RegisterG2PConnectServiceHandler(ctx, mux, conn); err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if unauthenticatedBody(w, r) {
			return
		}
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, ":upload") {
			// An upload is a bidirectional stream: acknowledgements go out while chunks still come in.
			// Without full duplex, net/http may close an HTTP/1.1 request body once the reply starts.
			_ = http.NewResponseController(w).EnableFullDuplex()
			guardUpload(mux, challengeWriter{w}, r)
			return
		}
		if g2pTooLarge(w, r) {
			return
		}
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, ":exportPayments") {
			r.Header.Set("Accept", reportMIME) // the report's pieces are written back to back, as sent
		}
		mux.ServeHTTP(challengeWriter{w}, r)
	}), nil
}

// jsonMarshaler is JSONPb whose streams are labelled newline-delimited JSON, as they are written.
type jsonMarshaler struct{ runtime.JSONPb }

func (*jsonMarshaler) StreamContentType(any) string { return "application/x-ndjson" }

// reportMIME selects reportMarshaler: a streamed HttpBody (ExportPayments' CSV) is written as its bytes,
// with its own content type and no delimiter between pieces (grpc-gateway writes one after each).
const reportMIME = "text/csv"

type reportMarshaler struct{ runtime.HTTPBodyMarshaler }

func (*reportMarshaler) Delimiter() []byte { return nil }

func (m *reportMarshaler) StreamContentType(v any) string { return m.ContentType(v) }

// incomingHeader forwards, besides grpc-gateway's defaults, a client's request id for GPO's logs and
// G2P Connect's Signature header.
func incomingHeader(key string) (string, bool) {
	if strings.EqualFold(key, "X-Request-Id") {
		return "x-request-id", true
	}
	if name, ok := g2pHeaders[strings.ToLower(key)]; ok {
		return name, true
	}
	return runtime.DefaultHeaderMatcher(key)
}

// routingError answers a known path with the wrong method 405 with an Allow header (grpc-gateway
// answers 501). Every route of the API is a GET, except the AIP-136 custom methods that change state
// (":upload", ":cancel", ":retryFailedPayments") and G2P Connect's routes ("/disburse…"), which are POSTs.
func routingError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	if httpStatus != http.StatusMethodNotAllowed {
		runtime.DefaultRoutingErrorHandler(ctx, mux, m, w, r, httpStatus)
		return
	}
	allow := http.MethodGet
	if i := strings.LastIndex(r.URL.Path, ":"); isG2P(r.URL.Path) || (i >= 0 && r.URL.Path[i+1:] != "watch") {
		allow = http.MethodPost
	}
	w.Header().Set("Allow", allow)
	err := &runtime.HTTPStatusError{
		HTTPStatus: http.StatusMethodNotAllowed,
		Err:        status.Errorf(codes.Unimplemented, "%s is not allowed here; use %s", r.Method, allow),
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// outgoingHeader returns GPO's response metadata as Grpc-Metadata-* headers, less gRPC's own transport
// headers, which mean nothing to an HTTP client.
func outgoingHeader(key string) (string, bool) {
	switch strings.ToLower(key) {
	case "content-type", "grpc-accept-encoding", "grpc-encoding":
		return "", false
	}
	return runtime.MetadataHeaderPrefix + key, true
}

// challengeWriter answers a 401 with the WWW-Authenticate challenge of RFC 6750 (grpc-gateway would
// put the error message there, and streams that fail before their first message get none).
type challengeWriter struct{ http.ResponseWriter }

func (c challengeWriter) WriteHeader(code int) {
	if code == http.StatusUnauthorized {
		c.Header().Set("WWW-Authenticate", `Bearer realm="gpo"`)
	}
	c.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (flushes, full duplex).
func (c challengeWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// unauthenticatedBody answers a REST call that carries a body but no bearer token with 401 before reading
// any of it: GPO would refuse the call anyway, and an unauthenticated 300 MB upload had taken the gateway
// from 17 MB to over 1 GB. (G2P Connect's routes answer in their own protocol, and bound bodies by size.)
func unauthenticatedBody(w http.ResponseWriter, r *http.Request) bool {
	g2p := isG2P(r.URL.Path) && r.URL.Path != "/mapper/on-resolve" // the mapper's callback carries no token
	if r.Method != http.MethodPost || !(g2p || strings.HasPrefix(r.URL.Path, "/v1/")) {
		return false
	}
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if strings.EqualFold(scheme, "bearer") && strings.TrimSpace(token) != "" {
		return false
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="gpo"`)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Connection", "close") // the body is not read: the connection cannot be reused
	w.WriteHeader(http.StatusUnauthorized)
	if g2p { // the spec's HttpErrorResponse, as GPO itself answers a 401
		_ = json.NewEncoder(w).Encode(map[string]any{"errors": []any{map[string]any{
			"code": "err.request.unauthorized", "message": "the call needs 'Authorization: Bearer <JWT>'"}}})
		return true
	}
	_, _ = w.Write([]byte(`{"code":16,"message":"missing 'Authorization: Bearer <JWT>'","details":[` +
		`{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"UNAUTHENTICATED","domain":"gpo.dev",` +
		`"metadata":{}}]}` + "\n"))
	return true
}
