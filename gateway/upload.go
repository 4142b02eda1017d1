package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	gpov1 "github.com/gpo-project/gpo/clients/go/gpo/v1"
)

// guardUpload protects the REST upload stream. When grpc-gateway cannot decode the request body (bad JSON,
// or a client that disconnects midway) it half-closes the gRPC stream, and GPO takes a half-close to mean
// "the upload is complete": the chunks sent so far would be paid as the whole batch. So every JSON value
// of the body is checked here first; on a bad value or a broken body the call is cancelled instead. The
// batch then stays UPLOADING, resumable with the same requestId, and the client gets INVALID_ARGUMENT.
func guardUpload(next http.Handler, w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	failure := &uploadFailure{}
	ctx = context.WithValue(ctx, uploadFailureKey{}, failure)
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go pump(r.Body, pw, failure, cancel, done)
	defer func() {
		close(done)
		_ = pr.Close() // ends a pump blocked on writing to a gateway that stopped reading
	}()
	guarded := r.WithContext(ctx)
	guarded.Body = pr
	next.ServeHTTP(w, guarded)
}

// pump copies the body's JSON values, checked, one per line, to the gateway's decoder. After a failure it
// holds the pipe open until the handler has finished, so the gateway never half-closes the call first.
func pump(body io.Reader, pw *io.PipeWriter, failure *uploadFailure, cancel context.CancelFunc, done <-chan struct{}) {
	decoder := json.NewDecoder(body)
	for n := 1; ; n++ {
		var raw json.RawMessage
		err := decoder.Decode(&raw)
		if errors.Is(err, io.EOF) {
			_ = pw.Close() // the body ended cleanly: the upload is complete
			return
		}
		if err == nil {
			err = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(raw, &gpov1.UploadBatchRequest{})
		}
		if err != nil {
			failure.set(n, err)
			cancel()
			<-done
			_ = pw.CloseWithError(err)
			return
		}
		if _, err := pw.Write(append(raw, '\n')); err != nil {
			return
		}
	}
}

type uploadFailureKey struct{}

type uploadFailure struct {
	mu    sync.Mutex
	value int // which JSON value of the body, from 1
	err   error
}

func (f *uploadFailure) set(value int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.value, f.err = value, err
}

// replaceUploadError is err, unless the call failed because its upload body was bad: then that reason.
func replaceUploadError(ctx context.Context, err error) error {
	f, ok := ctx.Value(uploadFailureKey{}).(*uploadFailure)
	if !ok {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		return err
	}
	st := status.Newf(codes.InvalidArgument,
		"request body, JSON value %d: %v; the upload was cancelled, not completed: resend it with the same "+
			"requestId from the first chunk that was not acknowledged", f.value, f.err)
	detailed, derr := st.WithDetails(&errdetails.ErrorInfo{
		Reason:   "INVALID_UPLOAD_BODY",
		Domain:   "gpo.dev",
		Metadata: map[string]string{"value": strconv.Itoa(f.value)},
	})
	if derr != nil {
		return st.Err()
	}
	return detailed.Err()
}

func errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, replaceUploadError(ctx, err))
}

func streamErrorHandler(ctx context.Context, err error) *status.Status {
	return runtime.DefaultStreamErrorHandler(ctx, replaceUploadError(ctx, err))
}
