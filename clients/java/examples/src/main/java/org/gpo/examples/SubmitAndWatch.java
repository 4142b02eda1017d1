package org.gpo.examples;

import io.grpc.ClientInterceptor;
import io.grpc.ClientInterceptors;
import io.grpc.Channel;
import io.grpc.ChannelCredentials;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.TlsChannelCredentials;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.grpc.stub.MetadataUtils;
import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.gpo.v1.Batch;
import org.gpo.v1.BatchHeader;
import org.gpo.v1.BatchState;
import org.gpo.v1.DisbursementServiceGrpc;
import org.gpo.v1.PaymentChunk;
import org.gpo.v1.PaymentInput;
import org.gpo.v1.PaymentTotal;
import org.gpo.v1.UploadBatchRequest;
import org.gpo.v1.UploadBatchResponse;
import org.gpo.v1.WatchBatchRequest;
import org.gpo.v1.WatchBatchResponse;

/**
 * Submits a batch in chunks over the bidirectional UploadBatch stream, then watches it to completion.
 * Settings: GPO_TARGET (host:port), GPO_TOKEN, GPO_PROGRAM, GPO_PAYMENTS, GPO_CHUNK_SIZE. The last line
 * printed is a JSON summary. TLS: GPO_TLS_CA_FILE (the CA of GPO's certificate; set, the channel is TLS)
 * and, where GPO requires a client certificate, GPO_TLS_CLIENT_CERT_FILE and GPO_TLS_CLIENT_KEY_FILE
 * (PEM files, the key in PKCS #8).
 */
public final class SubmitAndWatch {
  public static void main(String[] args) throws Exception {
    String target = env("GPO_TARGET", "127.0.0.1:50051");
    String token = env("GPO_TOKEN", "");
    if (token.isEmpty()) {
      throw new IllegalArgumentException("set GPO_TOKEN to a bearer token (e.g. `gpo token`)");
    }
    String program = env("GPO_PROGRAM", "demo-program");
    int count = Integer.parseInt(env("GPO_PAYMENTS", "250"));
    int chunkSize = Integer.parseInt(env("GPO_CHUNK_SIZE", "100"));

    ManagedChannel managed = Grpc.newChannelBuilder(target, channelCredentials()).build();
    try {
      Metadata auth = new Metadata();
      auth.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + token);
      ClientInterceptor bearer = MetadataUtils.newAttachHeadersInterceptor(auth);
      Channel channel = ClientInterceptors.intercept(managed, bearer);

      Upload upload = new Upload(program, count, chunkSize);
      DisbursementServiceGrpc.newStub(channel).uploadBatch(upload);
      Batch batch = upload.done.get(5, TimeUnit.MINUTES);
      System.err.printf("uploaded %s: %d payments, %d rejected%n",
          batch.getName(), batch.getPaymentCount(), upload.rejected.get());

      // Watch: one message per change, ending once every payment is final.
      int updates = 0;
      Iterator<WatchBatchResponse> watch = DisbursementServiceGrpc.newBlockingStub(channel)
          .watchBatch(WatchBatchRequest.newBuilder().setName(batch.getName()).build());
      while (watch.hasNext()) {
        batch = watch.next().getBatch();
        updates++;
      }
      if (batch.getState() != BatchState.BATCH_STATE_COMPLETED) {
        throw new IllegalStateException("watch ended with the batch " + batch.getState());
      }
      List<String> totals = new ArrayList<>();
      for (PaymentTotal t : batch.getTotalsList()) {
        totals.add(String.format("{\"status\":\"%s\",\"currency\":\"%s\",\"count\":%d,\"amount\":\"%s\"}",
            t.getStatus(), t.getCurrencyCode(), t.getCount(), t.getAmount()));
      }
      System.out.printf(
          "{\"batch\":\"%s\",\"state\":\"%s\",\"payments\":%d,\"acknowledged_chunks\":%d,\"rejected\":%d,"
              + "\"watch_updates\":%d,\"totals\":[%s]}%n",
          batch.getName(), batch.getState(), batch.getPaymentCount(), upload.acknowledged.get(),
          upload.rejected.get(), updates, String.join(",", totals));
    } finally {
      managed.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
    }
  }

  /**
   * The upload: sends the header, then numbered chunks whenever gRPC flow control is ready (so a large
   * batch is never buffered whole), and counts acknowledgements and the rejections they carry.
   */
  static final class Upload implements ClientResponseObserver<UploadBatchRequest, UploadBatchResponse> {
    final CompletableFuture<Batch> done = new CompletableFuture<>();
    final AtomicInteger acknowledged = new AtomicInteger();
    final AtomicInteger rejected = new AtomicInteger();
    private final AtomicReference<Batch> batch = new AtomicReference<>();
    private final String program;
    private final int count;
    private final int chunkSize;
    private int next = -1; // -1: the header is next; then the index of the next payment
    private long sequence = 0;
    private boolean halfClosed = false;

    Upload(String program, int count, int chunkSize) {
      this.program = program;
      this.count = count;
      this.chunkSize = chunkSize;
    }

    @Override
    public void beforeStart(ClientCallStreamObserver<UploadBatchRequest> requests) {
      requests.setOnReadyHandler(() -> {
        while (requests.isReady() && next < count) {
          if (next < 0) {
            requests.onNext(UploadBatchRequest.newBuilder().setHeader(BatchHeader.newBuilder()
                .setProgram(program)
                .setRequestId(UUID.randomUUID().toString())
                .setPayerFa("account:treasury@central-bank")).build());
            next = 0;
            continue;
          }
          PaymentChunk.Builder chunk = PaymentChunk.newBuilder().setSequence(++sequence);
          for (int end = Math.min(next + chunkSize, count); next < end; next++) {
            chunk.addPayments(payment(next));
          }
          requests.onNext(UploadBatchRequest.newBuilder().setChunk(chunk).build());
        }
        if (next >= count && !halfClosed) {
          halfClosed = true;
          requests.onCompleted();
        }
      });
    }

    @Override
    public void onNext(UploadBatchResponse response) {
      if (response.getAcknowledgedSequence() > 0) {
        acknowledged.incrementAndGet();
        rejected.addAndGet(response.getRejectionsCount());
      } else {
        batch.set(response.getBatch());
      }
    }

    @Override
    public void onError(Throwable error) {
      done.completeExceptionally(error);
    }

    @Override
    public void onCompleted() {
      done.complete(batch.get());
    }
  }

  /** Payment i has an exact decimal amount; every 100th is deliberately invalid (three decimals). */
  static PaymentInput payment(int i) {
    String amount = i % 100 == 99 ? "12.345" : String.format("%d.%02d", i % 50 + 1, (i * 7) % 100);
    return PaymentInput.newBuilder()
        .setReferenceId(String.format("java-%06d", i))
        .setPayeeFa(String.format("mobile:2547%08d@mpesa", i))
        .setAmount(amount)
        .setCurrencyCode("KES")
        .setPayeeName("Beneficiary " + i)
        .setPurpose("cash-transfer")
        .build();
  }

  /** TLS (mTLS with a client certificate) when GPO_TLS_CA_FILE is set; plaintext, for loopback only. */
  private static ChannelCredentials channelCredentials() throws IOException {
    String caFile = env("GPO_TLS_CA_FILE", "");
    if (caFile.isEmpty()) {
      return InsecureChannelCredentials.create();
    }
    TlsChannelCredentials.Builder tls = TlsChannelCredentials.newBuilder().trustManager(new File(caFile));
    String certFile = env("GPO_TLS_CLIENT_CERT_FILE", "");
    if (!certFile.isEmpty()) {
      tls.keyManager(new File(certFile), new File(env("GPO_TLS_CLIENT_KEY_FILE", "")));
    }
    return tls.build();
  }

  private static String env(String name, String fallback) {
    String value = System.getenv(name);
    return value == null || value.isEmpty() ? fallback : value;
  }
}
