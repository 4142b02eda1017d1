package main

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"

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

// isG2P tells whether a path is one of G2P Connect's (they sit at the root, as the spec has them).
func isG2P(path string) bool { return path == "/disburse" || strings.HasPrefix(path, "/disburse/") }

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
