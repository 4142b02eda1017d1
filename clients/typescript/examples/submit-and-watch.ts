// Submits a batch in chunks over the bidirectional UploadBatch stream, then watches it to completion.
// Settings: GPO_TARGET (host:port), GPO_TOKEN, GPO_PROGRAM, GPO_PAYMENTS, GPO_CHUNK_SIZE.
// TLS: GPO_TLS_CA_FILE (the CA of GPO's certificate; set, the channel is TLS) and, where GPO requires a
// client certificate, GPO_TLS_CLIENT_CERT_FILE and GPO_TLS_CLIENT_KEY_FILE (PEM files).
// The last line printed is a JSON summary.
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { type ChannelCredentials, credentials } from "@grpc/grpc-js";
import {
  type Batch,
  BatchState,
  batchStateToJSON,
  bearer,
  DisbursementServiceClient,
  type PaymentInput,
  paymentStatusToJSON,
  type UploadBatchResponse,
} from "../src";

const target = process.env.GPO_TARGET ?? "127.0.0.1:50051";
const token = process.env.GPO_TOKEN ?? "";
const program = process.env.GPO_PROGRAM ?? "demo-program";
const count = Number(process.env.GPO_PAYMENTS ?? "250");
const chunkSize = Number(process.env.GPO_CHUNK_SIZE ?? "100");

// TLS (mTLS with a client certificate) when GPO_TLS_CA_FILE is set; plaintext, for loopback only, otherwise.
function channelCredentials(): ChannelCredentials {
  const caFile = process.env.GPO_TLS_CA_FILE;
  if (!caFile) return credentials.createInsecure();
  const certFile = process.env.GPO_TLS_CLIENT_CERT_FILE;
  const keyFile = process.env.GPO_TLS_CLIENT_KEY_FILE;
  return credentials.createSsl(
    readFileSync(caFile),
    keyFile ? readFileSync(keyFile) : null,
    certFile ? readFileSync(certFile) : null,
  );
}

// Amounts are exact decimal strings; every 100th is deliberately invalid (three decimals) to show a rejection.
function payment(i: number): PaymentInput {
  const cents = String((i * 7) % 100).padStart(2, "0");
  return {
    referenceId: `ts-${String(i).padStart(6, "0")}`,
    payerFa: "",
    payeeFa: `mobile:2547${String(i).padStart(8, "0")}@mpesa`,
    amount: i % 100 === 99 ? "12.345" : `${(i % 50) + 1}.${cents}`,
    currencyCode: "KES",
    payeeName: `Beneficiary ${i}`,
    note: "",
    purpose: "cash-transfer",
    metadata: {},
  };
}

async function main(): Promise<void> {
  if (!token) throw new Error("set GPO_TOKEN to a bearer token (e.g. `gpo token`)");
  const client = new DisbursementServiceClient(target, channelCredentials());
  const metadata = bearer(token);

  // Upload: the header, then numbered chunks; each acknowledgement lists the chunk's rejections.
  const upload = client.uploadBatch(metadata);
  let batch: Batch | undefined;
  let acknowledged = 0;
  let rejected = 0;
  upload.on("data", (response: UploadBatchResponse) => {
    if (response.acknowledgedSequence !== "0") {
      acknowledged += 1;
      rejected += response.rejections.length;
    } else {
      batch = response.batch;
    }
  });
  const finished = new Promise<void>((resolve, reject) => {
    upload.on("end", resolve);
    upload.on("error", reject);
  });
  upload.write({
    header: {
      program,
      requestId: randomUUID(),
      payerFa: "account:treasury@central-bank",
      callbackUri: "",
      expectedPaymentCount: "0",
      expectedTotalAmount: "",
      cycle: "", // the program has no cycles (docs/TREASURY.md)
    },
  });
  for (let start = 0, sequence = 1; start < count; start += chunkSize, sequence += 1) {
    const payments = Array.from({ length: Math.min(chunkSize, count - start) }, (_, k) => payment(start + k));
    if (!upload.write({ chunk: { sequence: String(sequence), payments } })) {
      await once(upload, "drain"); // gRPC flow control: wait rather than buffer the whole batch
    }
  }
  upload.end();
  await finished;
  const uploaded: Batch | undefined = batch;
  if (uploaded === undefined) throw new Error("the upload ended without a batch");
  console.error(`uploaded ${uploaded.name}: ${uploaded.paymentCount} payments, ${rejected} rejected`);

  // Watch: one message per change, ending once every payment is final.
  let updates = 0;
  let final: Batch = uploaded;
  for await (const update of client.watchBatch({ name: uploaded.name }, metadata)) {
    updates += 1;
    final = update.batch ?? final;
  }
  client.close();
  if (final.state !== BatchState.BATCH_STATE_COMPLETED) {
    throw new Error(`watch ended with the batch ${batchStateToJSON(final.state)}`);
  }
  console.log(
    JSON.stringify({
      batch: final.name,
      state: batchStateToJSON(final.state),
      payments: Number(final.paymentCount),
      acknowledged_chunks: acknowledged,
      rejected,
      watch_updates: updates,
      totals: final.totals.map((t) => ({
        status: paymentStatusToJSON(t.status),
        currency: t.currencyCode,
        count: Number(t.count),
        amount: t.amount,
      })),
    }),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
