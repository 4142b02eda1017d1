package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/protobuf/proto"
)

// G2P Connect (gpo.v1.G2pConnectService) takes and returns google.api.HttpBody: a message is signed over
// the exact bytes its sender sent, so the body goes to GPO unparsed, and GPO's JSON reply comes back as
// written, with the HTTP status GPO chose (metadata "x-http-code").

const httpCodeKey = "x-http-code"

// g2pHeaders are the HTTP headers G2P Connect needs besides Authorization, forwarded as metadata.
var g2pHeaders = map[string]string{"signature": "signature"}

// isG2P tells whether a path is one of G2P Connect's POSTs (they sit at the root, as the spec has them;
// /mapper/on-resolve is the ID mapper's callback to GPO).
func isG2P(path string) bool {
	return path == "/disburse" || strings.HasPrefix(path, "/disburse/") || path == "/mapper/on-resolve"
}

// g2pMaxBodyBytes is the largest G2P Connect body forwarded to GPO: the gRPC message limit less room for
// the HttpBody framing (main sets it from -max-message-bytes).
var g2pMaxBodyBytes int64 = 16<<20 - 4096

// g2pTooLarge answers a G2P Connect POST whose body exceeds g2pMaxBodyBytes with HTTP 413 and a G2P
// Connect body (err.request.bad), rather than letting the gRPC client refuse it (HTTP 429, a gRPC error
// body). Otherwise it leaves the body, read into memory, for the handler and returns false.
func g2pTooLarge(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost || !isG2P(r.URL.Path) {
		return false
	}
	tooLarge := r.ContentLength > g2pMaxBodyBytes
	if !tooLarge {
		body, err := io.ReadAll(io.LimitReader(r.Body, g2pMaxBodyBytes+1))
		if err != nil {
			body = nil // the handler reads the (now failing) body and answers err.request.bad itself
		}
		tooLarge = int64(len(body)) > g2pMaxBodyBytes
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	if !tooLarge {
		return false
	}
	// Most clients send the whole body before reading the reply: read (and drop) a good part of it, so
	// they get the 413 rather than a connection reset; past that, the connection is closed.
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 4*g2pMaxBodyBytes))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Connection", "close")
	w.WriteHeader(http.StatusRequestEntityTooLarge)
	_ = json.NewEncoder(w).Encode(g2pTooLargeBody(r.URL.Path))
	return true
}

func g2pTooLargeBody(path string) any {
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00")
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	text := fmt.Sprintf("err.request.bad: the message is larger than %d bytes; send fewer disbursements per message", g2pMaxBodyBytes)
	if strings.HasPrefix(path, "/disburse/sync/") { // a sync reply is a header (and message)
		action := "on-search"
		if path == "/disburse/sync/disburse" {
			action = "on-disburse"
		}
		// An empty answer of the endpoint's kind, as GPO's own sync refusals carry.
		var message any = map[string]any{"transaction_id": "", "disbursements_status": []any{}}
		if path == "/disburse/sync/txn/status" {
			message = map[string]any{"transaction_id": "", "correlation_id": hex.EncodeToString(id),
				"txnstatus_response": map[string]any{"txn_type": "on-disburse",
					"txn_status": map[string]any{"transaction_id": "", "disbursements_status": []any{}}}}
		}
		return map[string]any{"header": map[string]any{
			"version": "1.0.0", "message_id": hex.EncodeToString(id), "message_ts": now, "action": action,
			"status": "rjct", "status_reason_message": text, "is_msg_encrypted": false,
		}, "message": message}
	}
	return map[string]any{"message": map[string]any{
		"ack_status": "ERR", "timestamp": now, "correlation_id": hex.EncodeToString(id),
		"error": map[string]any{"code": "err.request.bad", "message": text},
	}}
}

// ContentType is the HttpBody's own content type for G2P Connect replies, else proto3 JSON's.
func (m *jsonMarshaler) ContentType(v any) string {
	if body, ok := v.(*httpbody.HttpBody); ok {
		return body.GetContentType()
	}
	return m.JSONPb.ContentType(v)
}

// Marshal writes an HttpBody's bytes as they are.
func (m *jsonMarshaler) Marshal(v any) ([]byte, error) {
	if body, ok := v.(*httpbody.HttpBody); ok {
		return body.GetData(), nil
	}
	return m.JSONPb.Marshal(v)
}

// NewDecoder reads an HttpBody request as the raw request body (JSONPb would parse it as HttpBody's own
// JSON form and, discarding unknown fields, hand GPO an empty body). One inner decoder serves every value,
// since a stream (the NDJSON upload) decodes many values from one reader.
func (m *jsonMarshaler) NewDecoder(r io.Reader) runtime.Decoder {
	inner := m.JSONPb.NewDecoder(r)
	return runtime.DecoderFunc(func(v any) error {
		if body, ok := v.(*httpbody.HttpBody); ok {
			data, err := io.ReadAll(r)
			body.ContentType, body.Data = "application/json", data
			return err
		}
		return inner.Decode(v)
	})
}

// httpCode sets the HTTP status GPO asked for with the "x-http-code" metadata (G2P Connect answers 401,
// 403 and ERR envelopes with their own bodies, which a gRPC error would replace), and drops the header.
func httpCode(ctx context.Context, w http.ResponseWriter, _ proto.Message) error {
	md, ok := runtime.ServerMetadataFromContext(ctx)
	if !ok {
		return nil
	}
	values := md.HeaderMD.Get(httpCodeKey)
	if len(values) == 0 {
		return nil
	}
	w.Header().Del(runtime.MetadataHeaderPrefix + httpCodeKey)
	code, err := strconv.Atoi(values[0])
	if err != nil || code < 200 || code > 599 {
		return nil
	}
	w.WriteHeader(code)
	return nil
}
