"""The schema, in SQLAlchemy Core. Alembic migrations (migrations/versions) must match it."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    text,
)

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigId = BigInteger().with_variant(Integer, "sqlite")

metadata = MetaData()

batches = Table(
    "batches",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("uid", Text, nullable=False, unique=True),
    Column("program", Text, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("payer_fa", Text, nullable=False, server_default=""),
    Column("callback_uri", Text, nullable=False, server_default=""),
    Column("schedule_time", DateTime(timezone=True)),
    Column("expected_payment_count", BigInteger, nullable=False, server_default="0"),
    Column("expected_total_hundredths", BigInteger),
    Column("payment_count", BigInteger, nullable=False, server_default="0"),
    # Sum of the well-formed amounts received, checked against expected_total_hundredths.
    Column("received_total_hundredths", BigInteger, nullable=False, server_default="0"),
    Column("last_chunk_sequence", BigInteger, nullable=False, server_default="0"),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    # Migration 0005: payments not yet final (ACCEPTED, QUEUED, SENT), kept in step with every status change
    # in the same transaction, so "is the batch done?" is one row, not a search of the batch's payments.
    Column("unfinished_count", BigInteger, nullable=False, server_default="0"),
    # Migration 0017: the program's cycle the batch pays in (cycles.cycle), "" for none.
    Column("cycle", Text, nullable=False, server_default=""),
    # Migration 0018 (maker-checker approval): the token subject that opened the batch, who may never
    # approve it; and the approvals its program's policy required when its upload ended (0: none).
    Column("uploader", Text, nullable=False, server_default=""),
    Column("required_approvals", Integer, nullable=False, server_default="0"),
    UniqueConstraint("program", "request_id", name="uq_batches_program_request_id"),
    Index(
        "ix_batches_program_cycle",
        "program",
        "cycle",
        postgresql_where=text("cycle <> ''"),
        sqlite_where=text("cycle <> ''"),
    ),
)

payments = Table(
    "payments",
    metadata,
    Column("batch_id", BigInteger, ForeignKey("batches.id"), nullable=False),
    # 1-based position in the batch's upload; (batch_id, number) identifies a payment everywhere.
    Column("number", BigInteger, nullable=False),
    Column("reference_id", Text, nullable=False),
    Column("idempotency_key", Text, nullable=False),
    Column("payer_fa", Text, nullable=False),
    Column("payee_fa", Text, nullable=False),
    Column("amount_hundredths", BigInteger),  # NULL only for payments rejected for their amount
    Column("currency_code", Text, nullable=False),
    Column("payee_name", Text, nullable=False),
    Column("note", Text, nullable=False),
    Column("purpose", Text, nullable=False),
    Column("schedule_time", DateTime(timezone=True)),
    Column("metadata_json", Text),
    Column("rail", Text),
    Column("status", Text, nullable=False),
    Column("reason_code", Text, nullable=False, server_default=""),
    Column("reason_message", Text, nullable=False, server_default=""),
    Column("rail_reference", Text, nullable=False, server_default=""),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("update_time", DateTime(timezone=True), nullable=False),
    # Migration 0002: operator retries, stuck-payment sweeps, and why a payment needs an operator.
    Column("retries", Integer, nullable=False, server_default="0"),
    Column("sweeps", Integer, nullable=False, server_default="0"),
    Column("failure_definite", Boolean),  # FAILED: True = the rail refused; False = it was unreachable
    Column("attention_reason", Text, nullable=False, server_default=""),
    # The claim lease: while it lasts, one delivery of a chunk owns the payment; a concurrent duplicate
    # delivery is told BUSY instead of verifying (and perhaps executing) it a second time.
    Column("lease_owner", Text, nullable=False, server_default=""),
    Column("lease_expire_time", DateTime(timezone=True)),
    # The claim's fencing token (new on every claim), which renewals and the holder-only statements of a
    # report must present; and the end of the holder's in-flight window (its lease plus the rail's
    # longest call): until then no other claim may verify or execute the payment.
    Column("lease_token", BigInteger, nullable=False, server_default="0"),
    Column("in_flight_until", DateTime(timezone=True)),
    # Migration 0012: automatic re-sends after its chunk was dead-lettered before any claim (bounded).
    Column("redrives", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("batch_id", "number", name="pk_payments"),
    # No index here names a column that dispatch changes (status, update_time, leases): PostgreSQL can then
    # update a payment in place on its page (a HOT update) without touching any index, three times per
    # payment. Migration 0006 also leaves free room on each page for those updates (fillfactor).
    #
    # A reference is unique in its batch, except that duplicates are themselves stored as rejected. A
    # payment has a rail exactly when intake accepted it, and its rail never changes.
    Index(
        "uq_payments_batch_reference",
        "batch_id",
        "reference_id",
        unique=True,
        postgresql_where=text("rail IS NOT NULL"),
        sqlite_where=text("rail IS NOT NULL"),
    ),
    # Migration 0014, for operators' filters, on columns intake writes once: a payment found by its
    # reference across batches (`batches/-/payments`), and a batch's payments of one rail in upload order.
    # Filters on status, attention and update_time read the one batch (the primary key's range) instead.
    Index("ix_payments_reference", "reference_id", "batch_id"),
    Index("ix_payments_batch_rail", "batch_id", "rail", "number"),
)

# A payment's history: one row per change of its status, written by a trigger on payments (migration 0010)
# in the statement that changes it, so no code path can skip it and the hot path gains no round trip
# (PostgreSQL: one INSERT ... SELECT per UPDATE statement, over its transition tables). The status intake
# gave a payment is the first row's previous_status, at previous_time (or the payment's own, unchanged).
# No foreign key: the rows are read by (batch_id, number) only.
payment_status_changes = Table(
    "payment_status_changes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("batch_id", BigInteger, nullable=False),
    Column("number", BigInteger, nullable=False),
    Column("previous_status", Text, nullable=False),
    Column("previous_time", DateTime(timezone=True), nullable=False),
    Column("status", Text, nullable=False),
    Column("change_time", DateTime(timezone=True), nullable=False),
    Column("reason_code", Text, nullable=False),
    Column("reason_message", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Index("ix_payment_status_changes_payment", "batch_id", "number", "id"),
)

# Transactional outbox: a work chunk is written in the same transaction as its payments and published
# to the rail's queue afterwards, so nothing is published unpersisted or marked queued unpublished.
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("chunk_id", Text, nullable=False, unique=True),
    Column("batch_id", BigInteger, ForeignKey("batches.id"), nullable=False),
    Column("rail", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("not_before", DateTime(timezone=True)),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("publish_time", DateTime(timezone=True)),
    # The W3C traceparent of the upload that produced the chunk, when tracing was on: the relay continues it.
    Column("trace_context", Text),
    Index(
        "ix_outbox_unpublished",
        "batch_id",
        "id",
        postgresql_where=text("publish_time IS NULL"),
        sqlite_where=text("publish_time IS NULL"),
    ),
)

# Work chunks RabbitMQ dead-lettered (poison messages), recorded so operators see them through the API.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("rail", Text, nullable=False),
    Column("chunk_id", Text, nullable=False),
    Column("batch_id", BigInteger),
    Column("payment_count", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
)

# Idempotency of operator requests (AIP-155): a request_id acts on a batch once.
batch_operations = Table(
    "batch_operations",
    metadata,
    Column("batch_id", BigInteger, ForeignKey("batches.id"), nullable=False),
    Column("request_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("batch_id", "request_id", name="pk_batch_operations"),
)

# ---- G2P Connect (migration 0004): what callbacks need, so upstream systems never have to poll ---------

# One received G2P Connect message. (sender_id, message_id) is unique: a message sent again with the same
# bytes gets the same answer; the same message_id with other bytes is rejct.message_id.duplicate.
g2p_messages = Table(
    "g2p_messages",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("sender_id", Text, nullable=False),
    Column("message_id", Text, nullable=False),
    Column("body_digest", Text, nullable=False),  # SHA-256 of the exact request bytes
    Column("action", Text, nullable=False),  # disburse, txn/status, search
    Column("correlation_id", Text, nullable=False, unique=True),
    Column("transaction_id", Text, nullable=False, server_default=""),
    Column("sender_uri", Text, nullable=False, server_default=""),  # empty: no callbacks (sync)
    Column("batch_id", BigInteger, ForeignKey("batches.id")),  # the batch a disburse became
    # Every final status of the batch's payments has been called back (or no callbacks are wanted).
    Column("reported", Boolean, nullable=False, server_default=text("false")),
    Column("create_time", DateTime(timezone=True), nullable=False),
    UniqueConstraint("sender_id", "message_id", name="uq_g2p_messages_sender_message"),
    Index(
        "ix_g2p_messages_unreported",
        "id",
        postgresql_where=text("NOT reported"),
        sqlite_where=text("NOT reported"),
    ),
)

# Callbacks to send (on-disburse, on-status, on-search), written in the transaction that decides them and
# delivered with retries and backoff. The body is stored unsigned: it is signed afresh on every attempt.
g2p_callbacks = Table(
    "g2p_callbacks",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("message_id", BigInteger, ForeignKey("g2p_messages.id"), nullable=False),
    Column("uri", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_time", DateTime(timezone=True), nullable=False),
    Column("sent_time", DateTime(timezone=True)),
    Column("abandoned", Boolean, nullable=False, server_default=text("false")),
    Column("last_error", Text, nullable=False, server_default=""),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Index(
        "ix_g2p_callbacks_due",
        "next_attempt_time",
        postgresql_where=text("sent_time IS NULL AND NOT abandoned"),
        sqlite_where=text("sent_time IS NULL AND NOT abandoned"),
    ),
)

# Which final status of which payment was already put into an on-disburse callback (a REVERSED payment
# is reported again after its SUCCEEDED).
g2p_reported = Table(
    "g2p_reported",
    metadata,
    Column("batch_id", BigInteger, ForeignKey("batches.id"), nullable=False),
    Column("number", BigInteger, nullable=False),
    Column("status", Text, nullable=False),
    PrimaryKeyConstraint("batch_id", "number", "status", name="pk_g2p_reported"),
)

# Append-only audit trail of state-changing calls; each row carries its predecessor's hash (storage/audit.py).
# No foreign key: an event outlives what it names (an expired empty batch, say).
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("action", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("caller_kind", Text, nullable=False),
    Column("certificate_subject", Text, nullable=False, server_default=""),
    Column("batch_uid", Text, nullable=False, server_default=""),
    Column("payment_count", BigInteger, nullable=False, server_default="0"),
    Column("request_id", Text, nullable=False, server_default=""),
    Column("detail", Text, nullable=False, server_default="{}"),
    Column("previous_hash", Text, nullable=False),
    Column("hash", Text, nullable=False),
    Index("ix_audit_events_batch", "batch_uid", "id"),
)

# Webhooks (migration 0011): per batch with a callback_uri, what has been announced and where delivery
# stands. The head event (delivered_sequence + 1) is the only one sent, so events arrive in order; the
# lease keeps a second replica from sending it at the same time; failed_time marks a receiver given up on.
webhook_batches = Table(
    "webhook_batches",
    metadata,
    Column("batch_id", BigInteger, ForeignKey("batches.id"), primary_key=True, autoincrement=False),
    Column("last_sequence", Integer, nullable=False, server_default="0"),
    Column("last_state", Text, nullable=False, server_default=""),
    Column("last_unfinished", BigInteger, nullable=False, server_default="-1"),
    Column("last_event_time", DateTime(timezone=True)),
    Column("delivered_sequence", Integer, nullable=False, server_default="0"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_time", DateTime(timezone=True)),
    Column("lease_until", DateTime(timezone=True)),
    Column("failed_time", DateTime(timezone=True)),
    Column("last_error", Text, nullable=False, server_default=""),
)

# Each event's JSON body is fixed when the event is made: a retry sends the same bytes (and the same id).
webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("batch_id", BigInteger, ForeignKey("batches.id"), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("event_id", Text, nullable=False, unique=True),
    Column("type", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("delivered_time", DateTime(timezone=True)),
    UniqueConstraint("batch_id", "sequence", name="uq_webhook_events_batch_sequence"),
)

# Rail notes (migration 0015): what a rail sidecar must remember across attempts (e.g. the transfer id a
# payment went out under), recorded through RailService before the rail is called, so no sidecar keeps
# state of its own. Write-once: (rail, tag, idempotency_key) is unique and a repeat keeps the first body.
# `id` orders pages of ListRailNotes.
rail_notes = Table(
    "rail_notes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("rail", Text, nullable=False),
    Column("tag", Text, nullable=False),
    Column("idempotency_key", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
    UniqueConstraint("rail", "tag", "idempotency_key", name="uq_rail_notes_rail_tag_key"),
    Index("ix_rail_notes_rail_key", "rail", "idempotency_key"),
)

# ---- Statement reconciliation (migration 0016): bank statements and what their entries matched ----------

# One imported bank statement. (account, statement_ref) is unique: importing the same statement again
# changes nothing.
statements = Table(
    "statements",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("account", Text, nullable=False),
    Column("statement_ref", Text, nullable=False),  # the bank's id (camt.053 Stmt/Id; MT940 :20:/:28C:)
    Column("format", Text, nullable=False),  # camt.053, mt940
    Column("digest", Text, nullable=False),  # SHA-256 of the file it came in
    Column("entry_count", Integer, nullable=False),
    Column("reversed_count", Integer, nullable=False, server_default="0"),
    Column("create_time", DateTime(timezone=True), nullable=False),
    UniqueConstraint("account", "statement_ref", name="uq_statements_account_ref"),
)

# Each booking of a statement, with its outcome (gpo_server/domain/reconciliation.py, Outcome).
statement_entries = Table(
    "statement_entries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("statement_id", BigInteger, ForeignKey("statements.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("amount_hundredths", BigInteger, nullable=False),
    Column("currency_code", Text, nullable=False),
    Column("credit", Boolean, nullable=False),
    Column("booked", Boolean, nullable=False),
    Column("booking_date", Date),
    Column("end_to_end_ids", Text, nullable=False),  # JSON list
    Column("servicer_reference", Text, nullable=False),
    Column("batch_reference", Text, nullable=False),
    Column("batch_count", Integer, nullable=False),
    Column("returned", Boolean, nullable=False),
    Column("return_reason", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("note", Text, nullable=False),
    UniqueConstraint("statement_id", "number", name="uq_statement_entries_number"),
)

# The payments an entry booked (or returned). No foreign key to payments: rows are read by batch.
statement_matches = Table(
    "statement_matches",
    metadata,
    Column("entry_id", BigInteger, ForeignKey("statement_entries.id"), nullable=False),
    Column("batch_id", BigInteger, nullable=False),
    Column("number", BigInteger, nullable=False),
    PrimaryKeyConstraint("entry_id", "batch_id", "number", name="pk_statement_matches"),
    Index("ix_statement_matches_payment", "batch_id", "number"),
)

# The batches a statement was matched against: its unmatched entries are listed with each of them.
statement_batches = Table(
    "statement_batches",
    metadata,
    Column("statement_id", BigInteger, ForeignKey("statements.id"), nullable=False),
    Column("batch_id", BigInteger, ForeignKey("batches.id"), nullable=False),
    PrimaryKeyConstraint("statement_id", "batch_id", name="pk_statement_batches"),
    Index("ix_statement_batches_batch", "batch_id"),
)

# A batch's funds blocks with the sponsor bank (docs/TREASURY.md): one per rail with funds control and
# currency, made when the batch leaves its gates; the rail's sidecar blocks and releases them at the bank
# (RailService ClaimFundsBlocks / ReportFundsBlocks). block_id is derived from the batch, rail and currency,
# so the bank can refuse a second block under it.
funds_blocks = Table(
    "funds_blocks",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("block_id", Text, nullable=False, unique=True),
    Column("batch_id", BigInteger, ForeignKey("batches.id"), nullable=False),
    Column("rail", Text, nullable=False),
    Column("currency_code", Text, nullable=False),
    Column("payer_fa", Text, nullable=False),
    Column("amount_hundredths", BigInteger, nullable=False),
    Column("state", Text, nullable=False),
    Column("reason_code", Text, nullable=False, server_default=""),
    Column("reason_message", Text, nullable=False, server_default=""),
    Column("bank_reference", Text, nullable=False, server_default=""),
    Column("lease_owner", Text),
    Column("lease_expire_time", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    Index("ix_funds_blocks_batch", "batch_id"),
    Index("ix_funds_blocks_rail_state", "rail", "state"),
)

# ---- Program cycles (migration 0017): budgets, windows, one payment per beneficiary (domain/cycles.py) ----

# A program's cycle, "programs/{program}/cycles/{cycle}". Its batches name it (batches.cycle).
cycles = Table(
    "cycles",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("program", Text, nullable=False),
    Column("cycle", Text, nullable=False),  # the cycle's ID within its program, e.g. "2026-12"
    Column("start_time", DateTime(timezone=True)),  # batches are refused before it, if set
    Column("end_time", DateTime(timezone=True)),  # and from it on, if set
    # True: a beneficiary may be paid more than once in the cycle (no cycle_beneficiaries rows are kept).
    Column("allow_repeat_payments", Boolean, nullable=False, server_default=text("false")),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    UniqueConstraint("program", "cycle", name="uq_cycles_program_cycle"),
)

# A cycle's budget in one currency. A cycle with no row here is not budget-controlled.
cycle_budgets = Table(
    "cycle_budgets",
    metadata,
    Column("cycle_id", BigInteger, ForeignKey("cycles.id"), nullable=False),
    Column("currency_code", Text, nullable=False),
    Column("budget_hundredths", BigInteger, nullable=False),
    PrimaryKeyConstraint("cycle_id", "currency_code", name="pk_cycle_budgets"),
)

# Who holds each beneficiary of a cycle: the payment (batch_id, number) that pays them. Written in the
# intake chunk's transaction; the primary key refuses a second holder, so two concurrent batches cannot both
# pay one beneficiary. A holder that FAILED, was CANCELLED or REVERSED is replaced by the next payment.
cycle_beneficiaries = Table(
    "cycle_beneficiaries",
    metadata,
    Column("cycle_id", BigInteger, ForeignKey("cycles.id"), nullable=False),
    Column("beneficiary_key", Text, nullable=False),
    Column("batch_id", BigInteger, nullable=False),
    Column("number", BigInteger, nullable=False),
    PrimaryKeyConstraint("cycle_id", "beneficiary_key", name="pk_cycle_beneficiaries"),
    Index("ix_cycle_beneficiaries_payment", "batch_id", "number"),
)

# ---- Maker-checker approval (migration 0018): per program policies, and each approver's decision ------------

# A program's approval policy (domain/approval.py). amount_thresholds: JSON {currency: hundredths}.
approval_policies = Table(
    "approval_policies",
    metadata,
    Column("program", Text, primary_key=True),
    Column("amount_thresholds", Text, nullable=False, server_default="{}"),
    Column("count_threshold", BigInteger, nullable=False, server_default="0"),
    Column("required_approvals", Integer, nullable=False, server_default="2"),
    Column("update_time", DateTime(timezone=True), nullable=False),
)

# One approver's decision on one batch: (batch_id, approver) is the primary key, so the same approver
# can never count twice, however many calls race.
batch_approvals = Table(
    "batch_approvals",
    metadata,
    Column("batch_id", BigInteger, ForeignKey("batches.id"), nullable=False),
    Column("approver", Text, nullable=False),
    Column("decision", Text, nullable=False),  # approved, rejected
    Column("reason", Text, nullable=False, server_default=""),
    Column("request_id", Text, nullable=False, server_default=""),
    Column("create_time", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("batch_id", "approver", name="pk_batch_approvals"),
)
