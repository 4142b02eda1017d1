import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from gpo.v1 import resources_pb2 as _resources_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UploadBatchRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: BatchHeader
    chunk: PaymentChunk
    def __init__(self, header: _Optional[_Union[BatchHeader, _Mapping]] = ..., chunk: _Optional[_Union[PaymentChunk, _Mapping]] = ...) -> None: ...

class BatchHeader(_message.Message):
    __slots__ = ("program", "request_id", "payer_fa", "schedule_time", "callback_uri", "expected_payment_count", "expected_total_amount", "cycle")
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PAYER_FA_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_TIME_FIELD_NUMBER: _ClassVar[int]
    CALLBACK_URI_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_PAYMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_TOTAL_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    program: str
    request_id: str
    payer_fa: str
    schedule_time: _timestamp_pb2.Timestamp
    callback_uri: str
    expected_payment_count: int
    expected_total_amount: str
    cycle: str
    def __init__(self, program: _Optional[str] = ..., request_id: _Optional[str] = ..., payer_fa: _Optional[str] = ..., schedule_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., callback_uri: _Optional[str] = ..., expected_payment_count: _Optional[int] = ..., expected_total_amount: _Optional[str] = ..., cycle: _Optional[str] = ...) -> None: ...

class PaymentChunk(_message.Message):
    __slots__ = ("sequence", "payments")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PAYMENTS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    payments: _containers.RepeatedCompositeFieldContainer[PaymentInput]
    def __init__(self, sequence: _Optional[int] = ..., payments: _Optional[_Iterable[_Union[PaymentInput, _Mapping]]] = ...) -> None: ...

class PaymentInput(_message.Message):
    __slots__ = ("reference_id", "payer_fa", "payee_fa", "amount", "currency_code", "payee_name", "note", "purpose", "schedule_time", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
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
    def __init__(self, reference_id: _Optional[str] = ..., payer_fa: _Optional[str] = ..., payee_fa: _Optional[str] = ..., amount: _Optional[str] = ..., currency_code: _Optional[str] = ..., payee_name: _Optional[str] = ..., note: _Optional[str] = ..., purpose: _Optional[str] = ..., schedule_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class UploadBatchResponse(_message.Message):
    __slots__ = ("batch", "acknowledged_sequence", "rejections")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    batch: _resources_pb2.Batch
    acknowledged_sequence: int
    rejections: _containers.RepeatedCompositeFieldContainer[PaymentRejection]
    def __init__(self, batch: _Optional[_Union[_resources_pb2.Batch, _Mapping]] = ..., acknowledged_sequence: _Optional[int] = ..., rejections: _Optional[_Iterable[_Union[PaymentRejection, _Mapping]]] = ...) -> None: ...

class PaymentRejection(_message.Message):
    __slots__ = ("reference_id", "index", "reason_code", "message")
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reference_id: str
    index: int
    reason_code: str
    message: str
    def __init__(self, reference_id: _Optional[str] = ..., index: _Optional[int] = ..., reason_code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class GetBatchRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListBatchesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "program", "filter")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    program: str
    filter: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., program: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListBatchesResponse(_message.Message):
    __slots__ = ("batches", "next_page_token")
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    batches: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Batch]
    next_page_token: str
    def __init__(self, batches: _Optional[_Iterable[_Union[_resources_pb2.Batch, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListPaymentsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token", "filter")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    filter: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListPaymentsResponse(_message.Message):
    __slots__ = ("payments", "next_page_token")
    PAYMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    payments: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Payment]
    next_page_token: str
    def __init__(self, payments: _Optional[_Iterable[_Union[_resources_pb2.Payment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListStatusChangesRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListStatusChangesResponse(_message.Message):
    __slots__ = ("status_changes", "next_page_token")
    STATUS_CHANGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    status_changes: _containers.RepeatedCompositeFieldContainer[_resources_pb2.StatusChange]
    next_page_token: str
    def __init__(self, status_changes: _Optional[_Iterable[_Union[_resources_pb2.StatusChange, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchBatchRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class WatchBatchResponse(_message.Message):
    __slots__ = ("batch", "read_time")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    READ_TIME_FIELD_NUMBER: _ClassVar[int]
    batch: _resources_pb2.Batch
    read_time: _timestamp_pb2.Timestamp
    def __init__(self, batch: _Optional[_Union[_resources_pb2.Batch, _Mapping]] = ..., read_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RetryFailedPaymentsRequest(_message.Message):
    __slots__ = ("name", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "rail")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RAIL_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    rail: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., rail: _Optional[str] = ...) -> None: ...

class ListDeadLettersResponse(_message.Message):
    __slots__ = ("dead_letters", "next_page_token")
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    dead_letters: _containers.RepeatedCompositeFieldContainer[_resources_pb2.DeadLetter]
    next_page_token: str
    def __init__(self, dead_letters: _Optional[_Iterable[_Union[_resources_pb2.DeadLetter, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListRailStatsRequest(_message.Message):
    __slots__ = ("window_seconds",)
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    window_seconds: int
    def __init__(self, window_seconds: _Optional[int] = ...) -> None: ...

class ListRailStatsResponse(_message.Message):
    __slots__ = ("rail_stats", "window_seconds", "read_time")
    RAIL_STATS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    READ_TIME_FIELD_NUMBER: _ClassVar[int]
    rail_stats: _containers.RepeatedCompositeFieldContainer[_resources_pb2.RailStats]
    window_seconds: int
    read_time: _timestamp_pb2.Timestamp
    def __init__(self, rail_stats: _Optional[_Iterable[_Union[_resources_pb2.RailStats, _Mapping]]] = ..., window_seconds: _Optional[int] = ..., read_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListAuditEventsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "batch")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    batch: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., batch: _Optional[str] = ...) -> None: ...

class ListAuditEventsResponse(_message.Message):
    __slots__ = ("audit_events", "next_page_token")
    AUDIT_EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    audit_events: _containers.RepeatedCompositeFieldContainer[_resources_pb2.AuditEvent]
    next_page_token: str
    def __init__(self, audit_events: _Optional[_Iterable[_Union[_resources_pb2.AuditEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class VerifyAuditTrailRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VerifyAuditTrailResponse(_message.Message):
    __slots__ = ("checked_count", "intact", "first_broken_id", "problem")
    CHECKED_COUNT_FIELD_NUMBER: _ClassVar[int]
    INTACT_FIELD_NUMBER: _ClassVar[int]
    FIRST_BROKEN_ID_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    checked_count: int
    intact: bool
    first_broken_id: int
    problem: str
    def __init__(self, checked_count: _Optional[int] = ..., intact: _Optional[bool] = ..., first_broken_id: _Optional[int] = ..., problem: _Optional[str] = ...) -> None: ...

class CancelBatchRequest(_message.Message):
    __slots__ = ("name", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CancelPaymentRequest(_message.Message):
    __slots__ = ("name", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class RetryPaymentRequest(_message.Message):
    __slots__ = ("name", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ResolvePaymentRequest(_message.Message):
    __slots__ = ("name", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ExportPaymentsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RedriveDeadLetterRequest(_message.Message):
    __slots__ = ("name", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class RedriveDeadLetterResponse(_message.Message):
    __slots__ = ("dead_letter", "redriven_count")
    DEAD_LETTER_FIELD_NUMBER: _ClassVar[int]
    REDRIVEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    dead_letter: _resources_pb2.DeadLetter
    redriven_count: int
    def __init__(self, dead_letter: _Optional[_Union[_resources_pb2.DeadLetter, _Mapping]] = ..., redriven_count: _Optional[int] = ...) -> None: ...

class ImportStatementRequest(_message.Message):
    __slots__ = ("content", "format", "batches")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    content: bytes
    format: str
    batches: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, content: _Optional[bytes] = ..., format: _Optional[str] = ..., batches: _Optional[_Iterable[str]] = ...) -> None: ...

class ImportStatementResponse(_message.Message):
    __slots__ = ("statements",)
    STATEMENTS_FIELD_NUMBER: _ClassVar[int]
    statements: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Statement]
    def __init__(self, statements: _Optional[_Iterable[_Union[_resources_pb2.Statement, _Mapping]]] = ...) -> None: ...

class GetBatchReconciliationRequest(_message.Message):
    __slots__ = ("name", "list_limit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LIST_LIMIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    list_limit: int
    def __init__(self, name: _Optional[str] = ..., list_limit: _Optional[int] = ...) -> None: ...

class GetCycleReconciliationRequest(_message.Message):
    __slots__ = ("name", "list_limit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LIST_LIMIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    list_limit: int
    def __init__(self, name: _Optional[str] = ..., list_limit: _Optional[int] = ...) -> None: ...

class CreateCycleRequest(_message.Message):
    __slots__ = ("parent", "cycle_id", "cycle")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    CYCLE_ID_FIELD_NUMBER: _ClassVar[int]
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    parent: str
    cycle_id: str
    cycle: _resources_pb2.Cycle
    def __init__(self, parent: _Optional[str] = ..., cycle_id: _Optional[str] = ..., cycle: _Optional[_Union[_resources_pb2.Cycle, _Mapping]] = ...) -> None: ...

class UpdateCycleRequest(_message.Message):
    __slots__ = ("cycle", "name")
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    cycle: _resources_pb2.Cycle
    name: str
    def __init__(self, cycle: _Optional[_Union[_resources_pb2.Cycle, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...

class GetCycleRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListCyclesRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCyclesResponse(_message.Message):
    __slots__ = ("cycles", "next_page_token")
    CYCLES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    cycles: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Cycle]
    next_page_token: str
    def __init__(self, cycles: _Optional[_Iterable[_Union[_resources_pb2.Cycle, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ApproveBatchRequest(_message.Message):
    __slots__ = ("name", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class RejectBatchRequest(_message.Message):
    __slots__ = ("name", "request_id", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    request_id: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., request_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetApprovalPolicyRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UpdateApprovalPolicyRequest(_message.Message):
    __slots__ = ("approval_policy", "name")
    APPROVAL_POLICY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    approval_policy: _resources_pb2.ApprovalPolicy
    name: str
    def __init__(self, approval_policy: _Optional[_Union[_resources_pb2.ApprovalPolicy, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...
