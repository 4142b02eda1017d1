// Command submit-and-watch submits a batch in chunks over the bidirectional UploadBatch stream, then
// watches it to completion. Settings: GPO_TARGET (host:port), GPO_TOKEN, GPO_PROGRAM, GPO_PAYMENTS,
// GPO_CHUNK_SIZE. The last line printed is a JSON summary. TLS: GPO_TLS_CA_FILE (the CA of GPO's
// certificate; set, the connection is TLS) and, where GPO requires one, the client certificate
// GPO_TLS_CLIENT_CERT_FILE and GPO_TLS_CLIENT_KEY_FILE (PEM files).
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	gpov1 "github.com/gpo-project/gpo/clients/go/gpo/v1"
)

type total struct {
	Status   string `json:"status"`
	Currency string `json:"currency"`
	Count    int64  `json:"count"`
	Amount   string `json:"amount"`
}

type summary struct {
	Batch              string  `json:"batch"`
	State              string  `json:"state"`
	Payments           int64   `json:"payments"`
	AcknowledgedChunks int     `json:"acknowledged_chunks"`
	Rejected           int     `json:"rejected"`
	WatchUpdates       int     `json:"watch_updates"`
	Totals             []total `json:"totals"`
}

func main() {
	target := env("GPO_TARGET", "127.0.0.1:50051")
	token := os.Getenv("GPO_TOKEN")
	if token == "" {
		log.Fatal("set GPO_TOKEN to a bearer token (e.g. `gpo token`)")
	}
	count, chunkSize := envInt("GPO_PAYMENTS", 250), envInt("GPO_CHUNK_SIZE", 100)

	creds, err := transportCredentials()
	if err != nil {
		log.Fatal(err)
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := gpov1.NewDisbursementServiceClient(conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)

	s, batch, err := upload(ctx, client, env("GPO_PROGRAM", "demo-program"), count, chunkSize)
	if err != nil {
		log.Fatalf("upload: %v", err)
	}
	log.Printf("uploaded %s: %d payments, %d rejected", batch.GetName(), batch.GetPaymentCount(), s.Rejected)

	// Watch: one message per change, ending once every payment is final.
	watch, err := client.WatchBatch(ctx, &gpov1.WatchBatchRequest{Name: batch.GetName()})
	if err != nil {
		log.Fatal(err)
	}
	for {
		update, err := watch.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			log.Fatalf("watch: %v", err)
		}
		s.WatchUpdates++
		batch = update.GetBatch()
	}
	if batch.GetState() != gpov1.BatchState_BATCH_STATE_COMPLETED {
		log.Fatalf("watch ended with the batch %s", batch.GetState())
	}
	s.Batch, s.State, s.Payments = batch.GetName(), batch.GetState().String(), batch.GetPaymentCount()
	for _, t := range batch.GetTotals() {
		s.Totals = append(s.Totals, total{t.GetStatus().String(), t.GetCurrencyCode(), t.GetCount(), t.GetAmount()})
	}
	out, _ := json.Marshal(s)
	fmt.Println(string(out))
}

// upload sends the header, then numbered chunks, and reads acknowledgements as they come; each lists
// the chunk's rejected payments. The stream's last message carries the batch after the upload.
func upload(ctx context.Context, client gpov1.DisbursementServiceClient, program string, count, chunkSize int) (*summary, *gpov1.Batch, error) {
	stream, err := client.UploadBatch(ctx)
	if err != nil {
		return nil, nil, err
	}
	sent := make(chan error, 1)
	go func() {
		sent <- func() error {
			header := &gpov1.BatchHeader{Program: program, RequestId: newUUID(), PayerFa: "account:treasury@central-bank"}
			if err := stream.Send(&gpov1.UploadBatchRequest{Part: &gpov1.UploadBatchRequest_Header{Header: header}}); err != nil {
				return err
			}
			for start, sequence := 0, int64(1); start < count; start, sequence = start+chunkSize, sequence+1 {
				chunk := &gpov1.PaymentChunk{Sequence: sequence}
				for i := start; i < min(start+chunkSize, count); i++ {
					chunk.Payments = append(chunk.Payments, payment(i))
				}
				if err := stream.Send(&gpov1.UploadBatchRequest{Part: &gpov1.UploadBatchRequest_Chunk{Chunk: chunk}}); err != nil {
					return err
				}
			}
			return stream.CloseSend()
		}()
	}()
	s := &summary{}
	var batch *gpov1.Batch
	for {
		response, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		if response.GetAcknowledgedSequence() > 0 {
			s.AcknowledgedChunks++
			s.Rejected += len(response.GetRejections())
		} else {
			batch = response.GetBatch()
		}
	}
	// io.EOF from Send means the server ended the stream; Recv has already returned its status.
	if err := <-sent; err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	return s, batch, nil
}

// payment i has an exact decimal amount; every 100th is deliberately invalid (three decimals).
func payment(i int) *gpov1.PaymentInput {
	amount := fmt.Sprintf("%d.%02d", i%50+1, (i*7)%100)
	if i%100 == 99 {
		amount = "12.345"
	}
	return &gpov1.PaymentInput{
		ReferenceId:  fmt.Sprintf("go-%06d", i),
		PayeeFa:      fmt.Sprintf("mobile:2547%08d@mpesa", i),
		Amount:       amount,
		CurrencyCode: "KES",
		PayeeName:    fmt.Sprintf("Beneficiary %d", i),
		Purpose:      "cash-transfer",
	}
}

func newUUID() string { // a random (version 4) UUID, the upload's idempotency key
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// transportCredentials is TLS (mTLS with a client certificate) when GPO_TLS_CA_FILE is set; plaintext,
// for loopback only, otherwise.
func transportCredentials() (credentials.TransportCredentials, error) {
	caFile := os.Getenv("GPO_TLS_CA_FILE")
	if caFile == "" {
		return insecure.NewCredentials(), nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	config := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	if certFile := os.Getenv("GPO_TLS_CLIENT_CERT_FILE"); certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, os.Getenv("GPO_TLS_CLIENT_KEY_FILE"))
		if err != nil {
			return nil, err
		}
		config.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(config), nil
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func envInt(name string, fallback int) int {
	n, err := strconv.Atoi(env(name, strconv.Itoa(fallback)))
	if err != nil || n <= 0 {
		log.Fatalf("%s must be a positive integer", name)
	}
	return n
}
