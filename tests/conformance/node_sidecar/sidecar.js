#!/usr/bin/env node
// A minimal GPO rail sidecar in Node.js, written from docs/SIDECAR_CONTRACT.md alone (sections 2 to 5 and
// the sketch of section 8), for the conformance kit (gpo-sidecar-conformance). Its rail is the kit's HTTP
// ledger (section 10): POST /payments executes, GET /payments/{key} looks up (404 = never executed).
//
//   GPO_ORCHESTRATOR  GPO_AMQP_URL  GPO_RAIL  GPO_SIDECAR_TOKEN  GPO_CONFORMANCE_RAIL_URL
//
// GPO_NODE_SIDECAR_BUG=per-process-cache makes it wrong on purpose, as a sidecar once was: its look-up
// answers from a cache of what this process executed instead of asking the rail, so after a crash or on
// another instance a VERIFY payment looks absent and is executed again. The kit must catch that.
// GPO_NODE_SIDECAR_BUG=no-heartbeats never renews its claims (section 3.3): the kit must catch that too.
'use strict';

const path = require('path');
const crypto = require('crypto');
const amqp = require('amqplib');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
};
const ORCHESTRATOR = env('GPO_ORCHESTRATOR');
const AMQP_URL = env('GPO_AMQP_URL');
const RAIL = env('GPO_RAIL');
const TOKEN = env('GPO_SIDECAR_TOKEN');
const RAIL_URL = env('GPO_CONFORMANCE_RAIL_URL').replace(/\/$/, '');
const BUG = process.env.GPO_NODE_SIDECAR_BUG || '';
const PREFETCH = 8;
const INSTANCE = crypto.randomUUID(); // claim_id = instance:chunk_id (section 3.2)
const NAME = `node-sidecar-${process.pid}`;

const PROTOS = path.resolve(__dirname, '..', '..', '..', 'protos');
const loaderOptions = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };
const definition = protoLoader.loadSync(path.join(PROTOS, 'gpo/v1/rail.proto'), {
  ...loaderOptions,
  includeDirs: [PROTOS],
});
const gpo = grpc.loadPackageDefinition(definition).gpo.v1;
const root = new protobuf.Root();
root.resolvePath = (_origin, target) =>
  target.startsWith('google/protobuf/') ? target : path.join(PROTOS, target);
root.loadSync('gpo/v1/rail.proto', { keepCase: true });
const WorkChunk = root.lookupType('gpo.v1.WorkChunk');

const log = (message, extra = {}) =>
  console.log(JSON.stringify({ time: new Date().toISOString(), sidecar: NAME, message, ...extra }));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// -- gRPC (section 3)

const rpc = new gpo.RailService(ORCHESTRATOR, grpc.credentials.createInsecure());
const metadata = () => {
  const m = new grpc.Metadata();
  m.set('authorization', `Bearer ${TOKEN}`);
  return m;
};

function claim(request) {
  return new Promise((resolve, reject) =>
    rpc.ClaimWorkChunk(request, metadata(), (error, response) => (error ? reject(error) : resolve(response))),
  );
}

function renewClaim(request) {
  return new Promise((resolve, reject) =>
    rpc.RenewClaim(request, metadata(), (error, response) => (error ? reject(error) : resolve(response))),
  );
}

const millis = (d) => Number((d && d.seconds) || 0) * 1000 + Number((d && d.nanos) || 0) / 1e6;

// Section 3.3: a claim's lease, renewed every third of it while the sidecar works. Once a renewal is
// refused (LEASE_LOST), the lease has run out on this clock, or the delivering channel closed, no new
// rail call may start for the claim.
class Lease {
  constructor(request, answer, sentAt, numbers, deliveredOn) {
    this.request = request;
    this.token = answer.lease_token;
    this.ms = millis(answer.lease_duration) || 300_000;
    this.deadline = sentAt + this.ms;
    this.numbers = numbers;
    this.deliveredOn = deliveredOn;
    this.lost = false;
    this.beating = false;
    const renews = numbers.length && BUG !== 'no-heartbeats'; // WRONG on purpose without renewals
    this.timer = renews ? setInterval(() => this.beat(), Math.max(this.ms / 3, 500)) : null;
  }

  async beat() {
    if (this.beating || this.lost) return;
    this.beating = true;
    const sent = Date.now();
    try {
      const renewed = await renewClaim({
        chunk_id: this.request.chunk_id,
        batch: this.request.batch,
        claim_id: this.request.claim_id,
        lease_token: this.token,
        payment_numbers: this.numbers,
      });
      this.deadline = sent + (millis(renewed.lease_duration) || this.ms);
    } catch (error) {
      if (error.code === grpc.status.FAILED_PRECONDITION) {
        this.lost = true;
        log('lease lost: no new rail call for this claim', { chunk: this.request.chunk_id });
      } // GPO unreachable: the lease is not extended; the next beat tries again
    } finally {
      this.beating = false;
    }
  }

  mayStart() {
    return !this.lost && Date.now() < this.deadline && channel === this.deliveredOn;
  }

  stop() {
    if (this.timer) clearInterval(this.timer);
  }
}

// One long-lived ReportResults stream; response n answers request n (section 3.3).
let stream = null;
let waiting = [];
function reportStream() {
  if (stream) return stream;
  const s = rpc.ReportResults(metadata());
  s.on('data', (response) => {
    const next = waiting.shift();
    if (next) next.resolve(response);
  });
  const fail = (error) => {
    if (stream === s) stream = null;
    const pending = waiting;
    waiting = [];
    for (const p of pending) p.reject(error || new Error('ReportResults ended'));
  };
  s.on('error', fail);
  s.on('end', () => fail(new Error('ReportResults ended')));
  stream = s;
  return s;
}
function report(request) {
  return new Promise((resolve, reject) => {
    const s = reportStream();
    waiting.push({ resolve, reject });
    s.write(request);
  });
}

// -- the rail: the kit's ledger (rule 1: the idempotency key goes to the rail on every attempt)

const cache = new Map(); // only used by the deliberate bug
class Retryable extends Error {}

async function execute(item) {
  let response;
  try {
    response = await fetch(`${RAIL_URL}/payments`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        idempotency_key: item.idempotency_key,
        reference_id: item.reference_id,
        payee_fa: item.payee_fa,
        amount: item.amount, // a decimal string, as GPO sent it (rule 6): never a number
        currency_code: item.currency_code,
      }),
    });
  } catch (error) {
    throw new Retryable(`POST /payments: ${error.message}`);
  }
  if (response.status !== 200) throw new Retryable(`POST /payments answered ${response.status}`);
  const body = await response.json();
  cache.set(item.idempotency_key, body);
  return body;
}

async function lookUp(keys) {
  const found = new Map();
  if (BUG === 'per-process-cache') {
    for (const key of keys) if (cache.has(key)) found.set(key, cache.get(key));
    return found; // WRONG: this process's memory is not the rail's record (rule 3)
  }
  await Promise.all(
    keys.map(async (key) => {
      const response = await fetch(`${RAIL_URL}/payments/${encodeURIComponent(key)}`);
      if (response.status === 404) return; // never executed: absent
      if (response.status !== 200) throw new Retryable(`GET /payments answered ${response.status}`);
      found.set(key, await response.json());
    }),
  );
  return found;
}

// Section 4 step 6: 5 attempts, backoff uniform in [0, 0.2 s x 2^attempt], look-up before each retry;
// keys the rail still does not know after the last attempt are UNREACHABLE.
// Items whose calls may not start (mayStart false) are returned in notStarted.
async function executeWithRetries(items, mayStart) {
  const results = new Map();
  let pending = items;
  for (let attempt = 0; attempt < 5 && pending.length; attempt++) {
    if (!mayStart()) return { results, notStarted: pending };
    if (attempt) {
      await sleep(Math.random() * 200 * 2 ** attempt);
      const known = await lookUp(pending.map((i) => i.idempotency_key));
      for (const [key, body] of known) results.set(key, body);
      pending = pending.filter((i) => !known.has(i.idempotency_key));
    }
    const answers = await Promise.allSettled(pending.map(execute));
    const still = [];
    answers.forEach((answer, n) => {
      if (answer.status === 'fulfilled') results.set(pending[n].idempotency_key, answer.value);
      else still.push(pending[n]);
    });
    pending = still;
  }
  if (pending.length) {
    const known = await lookUp(pending.map((i) => i.idempotency_key)); // a failure requeues the chunk
    for (const item of pending) {
      results.set(
        item.idempotency_key,
        known.get(item.idempotency_key) || { outcome: 'UNREACHABLE', reason_code: 'rjct.rail.unreachable' },
      );
    }
  }
  return { results, notStarted: [] };
}

function toResult(item, body) {
  const outcome = {
    SUCCEEDED: 'RAIL_OUTCOME_SUCCEEDED',
    FAILED: 'RAIL_OUTCOME_FAILED',
    UNREACHABLE: 'RAIL_OUTCOME_UNREACHABLE',
  }[body.outcome];
  const now = Date.now();
  return {
    payment_number: String(item.payment_number),
    idempotency_key: item.idempotency_key,
    outcome,
    reason_code: body.outcome === 'SUCCEEDED' ? '' : body.reason_code || 'rjct.rail.error',
    reason_message: body.reason_message || '',
    rail_reference: body.rail_reference || '',
    complete_time: { seconds: String(Math.floor(now / 1000)), nanos: (now % 1000) * 1e6 },
  };
}

// -- one delivery (section 4)

const inHand = new Set();
let active = 0;
let stopping = false;

function requeueWait(message) {
  const count = Number((message.properties.headers || {})['x-delivery-count'] || 0);
  const cap = Math.min(30_000, 200 * 2 ** (count + 1));
  return cap / 2 + (Math.random() * cap) / 2;
}

async function handle(channel, message) {
  let chunk;
  try {
    chunk = WorkChunk.toObject(WorkChunk.decode(message.content), { longs: String, defaults: true });
  } catch (error) {
    log('undecodable message: dead-lettered', { error: error.message });
    settle(channel, message, false); // step 1
    return;
  }
  if (stopping || inHand.has(chunk.chunk_id)) {
    await sleep(stopping ? 0 : requeueWait(message)); // step 2: the guard
    settle(channel, message, true);
    return;
  }
  inHand.add(chunk.chunk_id);
  let lease = null;
  try {
    const items = new Map(chunk.items.map((i) => [String(i.payment_number), i]));
    const claimId = `${INSTANCE}:${chunk.chunk_id}`;
    const request = {
      chunk_id: chunk.chunk_id,
      batch: chunk.batch,
      payment_numbers: [...items.keys()],
      sidecar: NAME,
      claim_id: claimId,
    };
    const sentAt = Date.now();
    const answer = await claim(request);
    const by = (action) =>
      answer.decisions.filter((d) => d.action === action).map((d) => String(d.payment_number));
    let execute = by('CLAIM_ACTION_EXECUTE');
    const verify = by('CLAIM_ACTION_VERIFY');
    const busy = by('CLAIM_ACTION_BUSY');
    lease = new Lease(request, answer, sentAt, [...execute, ...verify], channel);
    const results = [];
    let released = [];
    let unknown = [];
    let returned = false; // the lease ended before every call started: the message goes back
    if (verify.length) {
      const known = await lookUp(verify.map((n) => items.get(n).idempotency_key));
      for (const n of verify) {
        const body = known.get(items.get(n).idempotency_key);
        if (body) results.push(toResult(items.get(n), body));
      }
      const missing = verify.filter((n) => !known.has(items.get(n).idempotency_key));
      if (chunk.verify_only) unknown = missing; // never execute in a sweep (step 5)
      else execute = execute.concat(missing);
    }
    if (chunk.verify_only) {
      released = execute; // step 6: not ours to execute
    } else if (execute.length) {
      const done = await executeWithRetries(
        execute.map((n) => items.get(n)),
        () => lease.mayStart(),
      );
      for (const n of execute) {
        const body = done.results.get(items.get(n).idempotency_key);
        if (body) results.push(toResult(items.get(n), body));
      }
      if (done.notStarted.length) {
        released = done.notStarted.map((i) => String(i.payment_number));
        returned = true;
      }
    }
    lease.stop();
    if (results.length || released.length || unknown.length) {
      await report({
        chunk_id: chunk.chunk_id,
        batch: chunk.batch,
        claim_id: claimId,
        lease_token: answer.lease_token,
        results,
        released_payment_numbers: released,
        unknown_payment_numbers: unknown,
      });
    }
    const answered = new Set([...results.map((r) => r.payment_number), ...released, ...unknown]);
    if (returned || [...execute, ...verify].some((n) => !answered.has(n))) {
      await sleep(500);
      settle(channel, message, true);
    } else if (busy.length) {
      const after = answer.retry_after || {};
      const ms = Number(after.seconds || 0) * 1000 + Number(after.nanos || 0) / 1e6;
      await sleep(Math.min(Math.max(ms, 100), 30_000));
      settle(channel, message, true);
    } else {
      settle(channel, message, null);
    }
  } catch (error) {
    log('delivery failed: returned to the queue', { chunk: chunk.chunk_id, error: String(error.message || error) });
    await sleep(requeueWait(message)); // step 9: never ack after a failure
    settle(channel, message, true);
  } finally {
    if (lease) lease.stop();
    inHand.delete(chunk.chunk_id);
  }
}

// Consuming (section 2.3). A lost connection (a broker restart) is not fatal: the broker requeues what
// this process held, the acks and rejects of those deliveries fail and are ignored (section 2.4), and
// the sidecar connects again and goes on consuming.
let connection = null;
let channel = null;
let consumerTag = null;
let idle = () => {};

function settle(ch, message, requeue) {
  try {
    if (requeue === null) ch.ack(message);
    else ch.reject(message, requeue);
  } catch (error) {
    log('settling failed with its channel: the broker requeued the message', { error: String(error) });
  }
}

async function connect() {
  for (let attempt = 0; ; attempt++) {
    try {
      const conn = await amqp.connect(AMQP_URL);
      const ch = await conn.createChannel();
      ch.on('error', (error) => log('channel error', { error: String(error) }));
      conn.on('error', (error) => log('connection error', { error: String(error) }));
      await ch.checkQueue(`gpo.rail.${RAIL}`); // passive: GPO declared it (section 2.1)
      await ch.prefetch(PREFETCH);
      const consumer = await ch.consume(
        `gpo.rail.${RAIL}`,
        (message) => {
          if (message === null) return; // the broker cancelled the consumer
          active++;
          handle(ch, message)
            .catch((error) => log('unexpected', { error: String(error) }))
            .finally(() => {
              active--;
              if (!active) idle();
            });
        },
        { noAck: false },
      );
      connection = conn;
      channel = ch;
      consumerTag = consumer.consumerTag;
      conn.on('close', () => {
        if (stopping || connection !== conn) return;
        log('AMQP connection lost: connecting again');
        connection = null;
        connect().catch((error) => {
          log('fatal', { error: String(error) });
          process.exit(2);
        });
      });
      log(`consuming gpo.rail.${RAIL}`, { bug: BUG || undefined });
      return;
    } catch (error) {
      if (stopping) return;
      const wait = Math.min(5000, 200 * 2 ** attempt);
      log('cannot consume yet', { error: String(error.message || error), retry_ms: wait });
      await sleep(wait);
    }
  }
}

async function main() {
  await connect();
  const shutdown = async () => {
    if (stopping) return;
    stopping = true; // deliveries that still arrive are returned at once
    log('stopping: finishing the chunks in hand');
    try {
      if (channel && consumerTag) await channel.cancel(consumerTag);
    } catch (error) {
      log('cancel failed', { error: String(error) });
    }
    if (active) await new Promise((resolve) => (idle = resolve));
    if (stream) stream.end();
    try {
      if (channel) await channel.close();
      if (connection) await connection.close();
    } catch (error) {
      log('close failed', { error: String(error) });
    }
    rpc.close();
    process.exit(0);
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

main().catch((error) => {
  log('fatal', { error: String(error.stack || error) });
  process.exit(2);
});
