import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ApprovalDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APPROVAL_DECISION_UNSPECIFIED: _ClassVar[ApprovalDecision]
    APPROVAL_DECISION_APPROVED: _ClassVar[ApprovalDecision]
    APPROVAL_DECISION_REJECTED: _ClassVar[ApprovalDecision]

class FundsBlockState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FUNDS_BLOCK_STATE_UNSPECIFIED: _ClassVar[FundsBlockState]
    FUNDS_BLOCK_STATE_REQUESTED: _ClassVar[FundsBlockState]
    FUNDS_BLOCK_STATE_BLOCKED: _ClassVar[FundsBlockState]
    FUNDS_BLOCK_STATE_INSUFFICIENT: _ClassVar[FundsBlockState]
    FUNDS_BLOCK_STATE_RELEASING: _ClassVar[FundsBlockState]
    FUNDS_BLOCK_STATE_RELEASED: _ClassVar[FundsBlockState]

class WebhookDeliveryState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WEBHOOK_DELIVERY_STATE_UNSPECIFIED: _ClassVar[WebhookDeliveryState]
    WEBHOOK_DELIVERY_STATE_DELIVERED: _ClassVar[WebhookDeliveryState]
    WEBHOOK_DELIVERY_STATE_PENDING: _ClassVar[WebhookDeliveryState]
    WEBHOOK_DELIVERY_STATE_RETRYING: _ClassVar[WebhookDeliveryState]
    WEBHOOK_DELIVERY_STATE_FAILED: _ClassVar[WebhookDeliveryState]

class BatchState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_STATE_UNSPECIFIED: _ClassVar[BatchState]
    BATCH_STATE_UPLOADING: _ClassVar[BatchState]
    BATCH_STATE_PROCESSING: _ClassVar[BatchState]
    BATCH_STATE_COMPLETED: _ClassVar[BatchState]
    BATCH_STATE_CANCELLED: _ClassVar[BatchState]
    BATCH_STATE_AWAITING_APPROVAL: _ClassVar[BatchState]
    BATCH_STATE_AWAITING_FUNDS: _ClassVar[BatchState]

class PaymentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYMENT_STATUS_UNSPECIFIED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_ACCEPTED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_QUEUED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_SENT: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_SUCCEEDED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_FAILED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_REJECTED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_CANCELLED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_REVERSED: _ClassVar[PaymentStatus]
APPROVAL_DECISION_UNSPECIFIED: ApprovalDecision
APPROVAL_DECISION_APPROVED: ApprovalDecision
APPROVAL_DECISION_REJECTED: ApprovalDecision
FUNDS_BLOCK_STATE_UNSPECIFIED: FundsBlockState
FUNDS_BLOCK_STATE_REQUESTED: FundsBlockState
FUNDS_BLOCK_STATE_BLOCKED: FundsBlockState
FUNDS_BLOCK_STATE_INSUFFICIENT: FundsBlockState
FUNDS_BLOCK_STATE_RELEASING: FundsBlockState
FUNDS_BLOCK_STATE_RELEASED: FundsBlockState
WEBHOOK_DELIVERY_STATE_UNSPECIFIED: WebhookDeliveryState
WEBHOOK_DELIVERY_STATE_DELIVERED: WebhookDeliveryState
WEBHOOK_DELIVERY_STATE_PENDING: WebhookDeliveryState
WEBHOOK_DELIVERY_STATE_RETRYING: WebhookDeliveryState
WEBHOOK_DELIVERY_STATE_FAILED: WebhookDeliveryState
BATCH_STATE_UNSPECIFIED: BatchState
BATCH_STATE_UPLOADING: BatchState
BATCH_STATE_PROCESSING: BatchState
BATCH_STATE_COMPLETED: BatchState
BATCH_STATE_CANCELLED: BatchState
BATCH_STATE_AWAITING_APPROVAL: BatchState
BATCH_STATE_AWAITING_FUNDS: BatchState
PAYMENT_STATUS_UNSPECIFIED: PaymentStatus
PAYMENT_STATUS_ACCEPTED: PaymentStatus
PAYMENT_STATUS_QUEUED: PaymentStatus
PAYMENT_STATUS_SENT: PaymentStatus
PAYMENT_STATUS_SUCCEEDED: PaymentStatus
PAYMENT_STATUS_FAILED: PaymentStatus
PAYMENT_STATUS_REJECTED: PaymentStatus
PAYMENT_STATUS_CANCELLED: PaymentStatus
PAYMENT_STATUS_REVERSED: PaymentStatus

class Batch(_message.Message):
    __slots__ = ("name", "program", "request_id", "state", "payer_fa", "schedule_time", "callback_uri", "expected_payment_count", "expected_total_amount", "payment_count", "totals", "last_chunk_sequence", "create_time", "update_time", "webhook_delivery", "funds_blocks", "cycle", "approvals", "required_approvals")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAYER_FA_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_TIME_FIELD_NUMBER: _ClassVar[int]
    CALLBACK_URI_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_PAYMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_TOTAL_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    LAST_CHUNK_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_DELIVERY_FIELD_NUMBER: _ClassVar[int]
    FUNDS_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_APPROVALS_FIELD_NUMBER: _ClassVar[int]
    name: str
    program: str
    request_id: str
    state: BatchState
    payer_fa: str
    schedule_time: _timestamp_pb2.Timestamp
    callback_uri: str
    expected_payment_count: int
    expected_total_amount: str
    payment_count: int
    totals: _containers.RepeatedCompositeFieldContainer[PaymentTotal]
    last_chunk_sequence: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    webhook_delivery: WebhookDelivery
    funds_blocks: _containers.RepeatedCompositeFieldContainer[FundsBlock]
    cycle: str
    approvals: _containers.RepeatedCompositeFieldContainer[BatchApproval]
    required_approvals: int
    def __init__(self, name: _Optional[str] = ..., program: _Optional[str] = ..., request_id: _Optional[str] = ..., state: _Optional[_Union[BatchState, str]] = ..., payer_fa: _Optional[str] = ..., schedule_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., callback_uri: _Optional[str] = ..., expected_payment_count: _Optional[int] = ..., expected_total_amount: _Optional[str] = ..., payment_count: _Optional[int] = ..., totals: _Optional[_Iterable[_Union[PaymentTotal, _Mapping]]] = ..., last_chunk_sequence: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., webhook_delivery: _Optional[_Union[WebhookDelivery, _Mapping]] = ..., funds_blocks: _Optional[_Iterable[_Union[FundsBlock, _Mapping]]] = ..., cycle: _Optional[str] = ..., approvals: _Optional[_Iterable[_Union[BatchApproval, _Mapping]]] = ..., required_approvals: _Optional[int] = ...) -> None: ...

class BatchApproval(_message.Message):
    __slots__ = ("approver", "decision", "reason", "create_time")
    APPROVER_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    approver: str
    decision: ApprovalDecision
    reason: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, approver: _Optional[str] = ..., decision: _Optional[_Union[ApprovalDecision, str]] = ..., reason: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ApprovalPolicy(_message.Message):
    __slots__ = ("name", "amount_thresholds", "payment_count_threshold", "required_approvals", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_COUNT_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_APPROVALS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    amount_thresholds: _containers.RepeatedCompositeFieldContainer[AmountThreshold]
    payment_count_threshold: int
    required_approvals: int
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., amount_thresholds: _Optional[_Iterable[_Union[AmountThreshold, _Mapping]]] = ..., payment_count_threshold: _Optional[int] = ..., required_approvals: _Optional[int] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AmountThreshold(_message.Message):
    __slots__ = ("currency_code", "amount")
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    currency_code: str
    amount: str
    def __init__(self, currency_code: _Optional[str] = ..., amount: _Optional[str] = ...) -> None: ...

class FundsBlock(_message.Message):
    __slots__ = ("block_id", "rail", "payer_fa", "currency_code", "amount", "state", "reason_code", "reason_message", "bank_reference", "attempt_count", "update_time")
    BLOCK_ID_FIELD_NUMBER: _ClassVar[int]
    RAIL_FIELD_NUMBER: _ClassVar[int]
    PAYER_FA_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    BANK_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_COUNT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    block_id: str
    rail: str
    payer_fa: str
    currency_code: str
    amount: str
    state: FundsBlockState
    reason_code: str
    reason_message: str
    bank_reference: str
    attempt_count: int
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, block_id: _Optional[str] = ..., rail: _Optional[str] = ..., payer_fa: _Optional[str] = ..., currency_code: _Optional[str] = ..., amount: _Optional[str] = ..., state: _Optional[_Union[FundsBlockState, str]] = ..., reason_code: _Optional[str] = ..., reason_message: _Optional[str] = ..., bank_reference: _Optional[str] = ..., attempt_count: _Optional[int] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WebhookDelivery(_message.Message):
    __slots__ = ("state", "event_count", "delivered_event_count", "failed_attempt_count", "last_error", "fail_time")
    STATE_FIELD_NUMBER: _ClassVar[int]
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAILED_ATTEMPT_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    FAIL_TIME_FIELD_NUMBER: _ClassVar[int]
    state: WebhookDeliveryState
    event_count: int
    delivered_event_count: int
    failed_attempt_count: int
    last_error: str
    fail_time: _timestamp_pb2.Timestamp
    def __init__(self, state: _Optional[_Union[WebhookDeliveryState, str]] = ..., event_count: _Optional[int] = ..., delivered_event_count: _Optional[int] = ..., failed_attempt_count: _Optional[int] = ..., last_error: _Optional[str] = ..., fail_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Payment(_message.Message):
    __slots__ = ("name", "reference_id", "payer_fa", "payee_fa", "amount", "currency_code", "payee_name", "note", "purpose", "schedule_time", "metadata", "status", "reason_code", "reason_message", "rail", "idempotency_key", "rail_reference", "update_time", "attempts", "attention_reason", "retries")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    PAYER_FA_FIELD_NUMBER: _ClassVar[int]
    PAYEE_FA_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    PAYEE_NAME_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_TIME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RAIL_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    RAIL_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ATTENTION_REASON_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    reference_id: str
    payer_fa: str
    payee_fa: str
    amount: str
    currency_code: str
    payee_name: str
    note: str
    purpose: str
    schedule_time: _timestamp_pb2.Timestamp
    metadata: _containers.ScalarMap[str, str]
    status: PaymentStatus
    reason_code: str
    reason_message: str
    rail: str
    idempotency_key: str
    rail_reference: str
    update_time: _timestamp_pb2.Timestamp
    attempts: int
    attention_reason: str
    retries: int
    def __init__(self, name: _Optional[str] = ..., reference_id: _Optional[str] = ..., payer_fa: _Optional[str] = ..., payee_fa: _Optional[str] = ..., amount: _Optional[str] = ..., currency_code: _Optional[str] = ..., payee_name: _Optional[str] = ..., note: _Optional[str] = ..., purpose: _Optional[str] = ..., schedule_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., status: _Optional[_Union[PaymentStatus, str]] = ..., reason_code: _Optional[str] = ..., reason_message: _Optional[str] = ..., rail: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., rail_reference: _Optional[str] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempts: _Optional[int] = ..., attention_reason: _Optional[str] = ..., retries: _Optional[int] = ...) -> None: ...

class PaymentTotal(_message.Message):
    __slots__ = ("status", "currency_code", "count", "amount")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    status: PaymentStatus
    currency_code: str
    count: int
    amount: str
    def __init__(self, status: _Optional[_Union[PaymentStatus, str]] = ..., currency_code: _Optional[str] = ..., count: _Optional[int] = ..., amount: _Optional[str] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("rail", "chunk_id", "batch", "payment_count", "reason", "create_time", "name")
    RAIL_FIELD_NUMBER: _ClassVar[int]
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    rail: str
    chunk_id: str
    batch: str
    payment_count: int
    reason: str
    create_time: _timestamp_pb2.Timestamp
    name: str
    def __init__(self, rail: _Optional[str] = ..., chunk_id: _Optional[str] = ..., batch: _Optional[str] = ..., payment_count: _Optional[int] = ..., reason: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...

class StatusChange(_message.Message):
    __slots__ = ("previous_status", "status", "change_time", "cause", "reason_code", "reason_message", "attempts")
    PREVIOUS_STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CHANGE_TIME_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    previous_status: PaymentStatus
    status: PaymentStatus
    change_time: _timestamp_pb2.Timestamp
    cause: str
    reason_code: str
    reason_message: str
    attempts: int
    def __init__(self, previous_status: _Optional[_Union[PaymentStatus, str]] = ..., status: _Optional[_Union[PaymentStatus, str]] = ..., change_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cause: _Optional[str] = ..., reason_code: _Optional[str] = ..., reason_message: _Optional[str] = ..., attempts: _Optional[int] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("id", "create_time", "action", "subject", "caller_kind", "certificate_subject", "batch", "payment_count", "request_id", "detail_json", "hash", "previous_hash")
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CALLER_KIND_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_SUBJECT_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DETAIL_JSON_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_HASH_FIELD_NUMBER: _ClassVar[int]
    id: int
    create_time: _timestamp_pb2.Timestamp
    action: str
    subject: str
    caller_kind: str
    certificate_subject: str
    batch: str
    payment_count: int
    request_id: str
    detail_json: str
    hash: str
    previous_hash: str
    def __init__(self, id: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., action: _Optional[str] = ..., subject: _Optional[str] = ..., caller_kind: _Optional[str] = ..., certificate_subject: _Optional[str] = ..., batch: _Optional[str] = ..., payment_count: _Optional[int] = ..., request_id: _Optional[str] = ..., detail_json: _Optional[str] = ..., hash: _Optional[str] = ..., previous_hash: _Optional[str] = ...) -> None: ...

class Statement(_message.Message):
    __slots__ = ("name", "account", "statement_id", "format", "entry_count", "reversed_count", "create_time", "outcome_counts", "batches", "already_imported")
    class OutcomeCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    ENTRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    REVERSED_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_COUNTS_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    ALREADY_IMPORTED_FIELD_NUMBER: _ClassVar[int]
    name: str
    account: str
    statement_id: str
    format: str
    entry_count: int
    reversed_count: int
    create_time: _timestamp_pb2.Timestamp
    outcome_counts: _containers.ScalarMap[str, int]
    batches: _containers.RepeatedScalarFieldContainer[str]
    already_imported: bool
    def __init__(self, name: _Optional[str] = ..., account: _Optional[str] = ..., statement_id: _Optional[str] = ..., format: _Optional[str] = ..., entry_count: _Optional[int] = ..., reversed_count: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., outcome_counts: _Optional[_Mapping[str, int]] = ..., batches: _Optional[_Iterable[str]] = ..., already_imported: _Optional[bool] = ...) -> None: ...

class BatchReconciliation(_message.Message):
    __slots__ = ("name", "declared_count", "declared_total_amount", "totals", "matched", "unmatched_entries", "unconfirmed_payments", "unconfirmed_count")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DECLARED_COUNT_FIELD_NUMBER: _ClassVar[int]
    DECLARED_TOTAL_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    UNMATCHED_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    UNCONFIRMED_PAYMENTS_FIELD_NUMBER: _ClassVar[int]
    UNCONFIRMED_COUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    declared_count: int
    declared_total_amount: str
    totals: _containers.RepeatedCompositeFieldContainer[ReconciliationTotal]
    matched: _containers.RepeatedCompositeFieldContainer[StatementMatch]
    unmatched_entries: _containers.RepeatedCompositeFieldContainer[StatementEntry]
    unconfirmed_payments: _containers.RepeatedCompositeFieldContainer[UnconfirmedPayment]
    unconfirmed_count: int
    def __init__(self, name: _Optional[str] = ..., declared_count: _Optional[int] = ..., declared_total_amount: _Optional[str] = ..., totals: _Optional[_Iterable[_Union[ReconciliationTotal, _Mapping]]] = ..., matched: _Optional[_Iterable[_Union[StatementMatch, _Mapping]]] = ..., unmatched_entries: _Optional[_Iterable[_Union[StatementEntry, _Mapping]]] = ..., unconfirmed_payments: _Optional[_Iterable[_Union[UnconfirmedPayment, _Mapping]]] = ..., unconfirmed_count: _Optional[int] = ...) -> None: ...

class CycleReconciliation(_message.Message):
    __slots__ = ("name", "batch_count", "declared_count", "declared_total_amount", "totals", "unmatched_entries", "unconfirmed_payments", "unconfirmed_count")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BATCH_COUNT_FIELD_NUMBER: _ClassVar[int]
    DECLARED_COUNT_FIELD_NUMBER: _ClassVar[int]
    DECLARED_TOTAL_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    UNMATCHED_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    UNCONFIRMED_PAYMENTS_FIELD_NUMBER: _ClassVar[int]
    UNCONFIRMED_COUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    batch_count: int
    declared_count: int
    declared_total_amount: str
    totals: _containers.RepeatedCompositeFieldContainer[ReconciliationTotal]
    unmatched_entries: _containers.RepeatedCompositeFieldContainer[StatementEntry]
    unconfirmed_payments: _containers.RepeatedCompositeFieldContainer[UnconfirmedPayment]
    unconfirmed_count: int
    def __init__(self, name: _Optional[str] = ..., batch_count: _Optional[int] = ..., declared_count: _Optional[int] = ..., declared_total_amount: _Optional[str] = ..., totals: _Optional[_Iterable[_Union[ReconciliationTotal, _Mapping]]] = ..., unmatched_entries: _Optional[_Iterable[_Union[StatementEntry, _Mapping]]] = ..., unconfirmed_payments: _Optional[_Iterable[_Union[UnconfirmedPayment, _Mapping]]] = ..., unconfirmed_count: _Optional[int] = ...) -> None: ...

class ReconciliationTotal(_message.Message):
    __slots__ = ("currency_code", "paid_count", "paid_amount", "confirmed_count", "confirmed_amount", "reversed_count", "reversed_amount")
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    PAID_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAID_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REVERSED_COUNT_FIELD_NUMBER: _ClassVar[int]
    REVERSED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    currency_code: str
    paid_count: int
    paid_amount: str
    confirmed_count: int
    confirmed_amount: str
    reversed_count: int
    reversed_amount: str
    def __init__(self, currency_code: _Optional[str] = ..., paid_count: _Optional[int] = ..., paid_amount: _Optional[str] = ..., confirmed_count: _Optional[int] = ..., confirmed_amount: _Optional[str] = ..., reversed_count: _Optional[int] = ..., reversed_amount: _Optional[str] = ...) -> None: ...

class StatementMatch(_message.Message):
    __slots__ = ("payment", "amount", "currency_code", "status", "statement", "entry_number", "outcome", "booking_date")
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    ENTRY_NUMBER_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    BOOKING_DATE_FIELD_NUMBER: _ClassVar[int]
    payment: str
    amount: str
    currency_code: str
    status: PaymentStatus
    statement: str
    entry_number: int
    outcome: str
    booking_date: str
    def __init__(self, payment: _Optional[str] = ..., amount: _Optional[str] = ..., currency_code: _Optional[str] = ..., status: _Optional[_Union[PaymentStatus, str]] = ..., statement: _Optional[str] = ..., entry_number: _Optional[int] = ..., outcome: _Optional[str] = ..., booking_date: _Optional[str] = ...) -> None: ...

class StatementEntry(_message.Message):
    __slots__ = ("statement", "number", "amount", "currency_code", "credit", "booking_date", "end_to_end_ids", "account_servicer_reference", "batch_booking_reference", "returned", "return_reason", "outcome", "note")
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    BOOKING_DATE_FIELD_NUMBER: _ClassVar[int]
    END_TO_END_IDS_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_SERVICER_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    BATCH_BOOKING_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    RETURNED_FIELD_NUMBER: _ClassVar[int]
    RETURN_REASON_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    statement: str
    number: int
    amount: str
    currency_code: str
    credit: bool
    booking_date: str
    end_to_end_ids: _containers.RepeatedScalarFieldContainer[str]
    account_servicer_reference: str
    batch_booking_reference: str
    returned: bool
    return_reason: str
    outcome: str
    note: str
    def __init__(self, statement: _Optional[str] = ..., number: _Optional[int] = ..., amount: _Optional[str] = ..., currency_code: _Optional[str] = ..., credit: _Optional[bool] = ..., booking_date: _Optional[str] = ..., end_to_end_ids: _Optional[_Iterable[str]] = ..., account_servicer_reference: _Optional[str] = ..., batch_booking_reference: _Optional[str] = ..., returned: _Optional[bool] = ..., return_reason: _Optional[str] = ..., outcome: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class UnconfirmedPayment(_message.Message):
    __slots__ = ("payment", "amount", "currency_code", "rail", "rail_reference")
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    RAIL_FIELD_NUMBER: _ClassVar[int]
    RAIL_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    payment: str
    amount: str
    currency_code: str
    rail: str
    rail_reference: str
    def __init__(self, payment: _Optional[str] = ..., amount: _Optional[str] = ..., currency_code: _Optional[str] = ..., rail: _Optional[str] = ..., rail_reference: _Optional[str] = ...) -> None: ...

class RailStats(_message.Message):
    __slots__ = ("rail", "succeeded_count", "failed_count", "failure_reasons", "waiting_count", "sent_count")
    RAIL_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAILED_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASONS_FIELD_NUMBER: _ClassVar[int]
    WAITING_COUNT_FIELD_NUMBER: _ClassVar[int]
    SENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    rail: str
    succeeded_count: int
    failed_count: int
    failure_reasons: _containers.RepeatedCompositeFieldContainer[ReasonCount]
    waiting_count: int
    sent_count: int
    def __init__(self, rail: _Optional[str] = ..., succeeded_count: _Optional[int] = ..., failed_count: _Optional[int] = ..., failure_reasons: _Optional[_Iterable[_Union[ReasonCount, _Mapping]]] = ..., waiting_count: _Optional[int] = ..., sent_count: _Optional[int] = ...) -> None: ...

class ReasonCount(_message.Message):
    __slots__ = ("reason_code", "count")
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    reason_code: str
    count: int
    def __init__(self, reason_code: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class Cycle(_message.Message):
    __slots__ = ("name", "start_time", "end_time", "budgets", "allow_repeat_payments", "totals", "batch_count", "declared_payment_count", "declared_total_amount", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_REPEAT_PAYMENTS_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    BATCH_COUNT_FIELD_NUMBER: _ClassVar[int]
    DECLARED_PAYMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    DECLARED_TOTAL_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    budgets: _containers.RepeatedCompositeFieldContainer[CycleBudget]
    allow_repeat_payments: bool
    totals: _containers.RepeatedCompositeFieldContainer[CycleTotal]
    batch_count: int
    declared_payment_count: int
    declared_total_amount: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., budgets: _Optional[_Iterable[_Union[CycleBudget, _Mapping]]] = ..., allow_repeat_payments: _Optional[bool] = ..., totals: _Optional[_Iterable[_Union[CycleTotal, _Mapping]]] = ..., batch_count: _Optional[int] = ..., declared_payment_count: _Optional[int] = ..., declared_total_amount: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CycleBudget(_message.Message):
    __slots__ = ("currency_code", "amount")
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    currency_code: str
    amount: str
    def __init__(self, currency_code: _Optional[str] = ..., amount: _Optional[str] = ...) -> None: ...

class CycleTotal(_message.Message):
    __slots__ = ("currency_code", "budget_amount", "committed_amount", "accepted_count", "accepted_amount", "paid_count", "paid_amount", "failed_count", "failed_amount", "reversed_count", "reversed_amount", "cancelled_count", "cancelled_amount", "rejected_count")
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    BUDGET_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PAID_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAID_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    FAILED_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAILED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REVERSED_COUNT_FIELD_NUMBER: _ClassVar[int]
    REVERSED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_COUNT_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REJECTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    currency_code: str
    budget_amount: str
    committed_amount: str
    accepted_count: int
    accepted_amount: str
    paid_count: int
    paid_amount: str
    failed_count: int
    failed_amount: str
    reversed_count: int
    reversed_amount: str
    cancelled_count: int
    cancelled_amount: str
    rejected_count: int
    def __init__(self, currency_code: _Optional[str] = ..., budget_amount: _Optional[str] = ..., committed_amount: _Optional[str] = ..., accepted_count: _Optional[int] = ..., accepted_amount: _Optional[str] = ..., paid_count: _Optional[int] = ..., paid_amount: _Optional[str] = ..., failed_count: _Optional[int] = ..., failed_amount: _Optional[str] = ..., reversed_count: _Optional[int] = ..., reversed_amount: _Optional[str] = ..., cancelled_count: _Optional[int] = ..., cancelled_amount: _Optional[str] = ..., rejected_count: _Optional[int] = ...) -> None: ...
