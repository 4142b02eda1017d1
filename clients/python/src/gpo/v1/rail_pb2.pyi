import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClaimAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLAIM_ACTION_UNSPECIFIED: _ClassVar[ClaimAction]
    CLAIM_ACTION_EXECUTE: _ClassVar[ClaimAction]
    CLAIM_ACTION_VERIFY: _ClassVar[ClaimAction]
    CLAIM_ACTION_SKIP: _ClassVar[ClaimAction]
    CLAIM_ACTION_BUSY: _ClassVar[ClaimAction]

class RailOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RAIL_OUTCOME_UNSPECIFIED: _ClassVar[RailOutcome]
    RAIL_OUTCOME_SUCCEEDED: _ClassVar[RailOutcome]
    RAIL_OUTCOME_FAILED: _ClassVar[RailOutcome]
    RAIL_OUTCOME_UNREACHABLE: _ClassVar[RailOutcome]
    RAIL_OUTCOME_REVERSED: _ClassVar[RailOutcome]

class FundsAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FUNDS_ACTION_UNSPECIFIED: _ClassVar[FundsAction]
    FUNDS_ACTION_BLOCK: _ClassVar[FundsAction]
    FUNDS_ACTION_RELEASE: _ClassVar[FundsAction]

class FundsOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FUNDS_OUTCOME_UNSPECIFIED: _ClassVar[FundsOutcome]
    FUNDS_OUTCOME_BLOCKED: _ClassVar[FundsOutcome]
    FUNDS_OUTCOME_INSUFFICIENT: _ClassVar[FundsOutcome]
    FUNDS_OUTCOME_RELEASED: _ClassVar[FundsOutcome]
CLAIM_ACTION_UNSPECIFIED: ClaimAction
CLAIM_ACTION_EXECUTE: ClaimAction
CLAIM_ACTION_VERIFY: ClaimAction
CLAIM_ACTION_SKIP: ClaimAction
CLAIM_ACTION_BUSY: ClaimAction
RAIL_OUTCOME_UNSPECIFIED: RailOutcome
RAIL_OUTCOME_SUCCEEDED: RailOutcome
RAIL_OUTCOME_FAILED: RailOutcome
RAIL_OUTCOME_UNREACHABLE: RailOutcome
RAIL_OUTCOME_REVERSED: RailOutcome
FUNDS_ACTION_UNSPECIFIED: FundsAction
FUNDS_ACTION_BLOCK: FundsAction
FUNDS_ACTION_RELEASE: FundsAction
FUNDS_OUTCOME_UNSPECIFIED: FundsOutcome
FUNDS_OUTCOME_BLOCKED: FundsOutcome
FUNDS_OUTCOME_INSUFFICIENT: FundsOutcome
FUNDS_OUTCOME_RELEASED: FundsOutcome

class WorkChunk(_message.Message):
    __slots__ = ("chunk_id", "rail", "batch", "items", "create_time", "verify_only")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    RAIL_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    VERIFY_ONLY_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    rail: str
    batch: str
    items: _containers.RepeatedCompositeFieldContainer[WorkItem]
    create_time: _timestamp_pb2.Timestamp
    verify_only: bool
    def __init__(self, chunk_id: _Optional[str] = ..., rail: _Optional[str] = ..., batch: _Optional[str] = ..., items: _Optional[_Iterable[_Union[WorkItem, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., verify_only: _Optional[bool] = ...) -> None: ...

class WorkItem(_message.Message):
    __slots__ = ("payment_number", "idempotency_key", "reference_id", "payer_fa", "payee_fa", "amount", "currency_code", "payee_name", "note", "purpose")
    PAYMENT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    PAYER_FA_FIELD_NUMBER: _ClassVar[int]
    PAYEE_FA_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    PAYEE_NAME_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    payment_number: int
    idempotency_key: str
    reference_id: str
    payer_fa: str
    payee_fa: str
    amount: str
    currency_code: str
    payee_name: str
    note: str
    purpose: str
    def __init__(self, payment_number: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., reference_id: _Optional[str] = ..., payer_fa: _Optional[str] = ..., payee_fa: _Optional[str] = ..., amount: _Optional[str] = ..., currency_code: _Optional[str] = ..., payee_name: _Optional[str] = ..., note: _Optional[str] = ..., purpose: _Optional[str] = ...) -> None: ...

class ClaimWorkChunkRequest(_message.Message):
    __slots__ = ("chunk_id", "batch", "payment_numbers", "sidecar", "claim_id", "lease_duration", "max_call_duration")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_NUMBERS_FIELD_NUMBER: _ClassVar[int]
    SIDECAR_FIELD_NUMBER: _ClassVar[int]
    CLAIM_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    MAX_CALL_DURATION_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    batch: str
    payment_numbers: _containers.RepeatedScalarFieldContainer[int]
    sidecar: str
    claim_id: str
    lease_duration: _duration_pb2.Duration
    max_call_duration: _duration_pb2.Duration
    def __init__(self, chunk_id: _Optional[str] = ..., batch: _Optional[str] = ..., payment_numbers: _Optional[_Iterable[int]] = ..., sidecar: _Optional[str] = ..., claim_id: _Optional[str] = ..., lease_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_call_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ClaimDecision(_message.Message):
    __slots__ = ("payment_number", "action")
    PAYMENT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    payment_number: int
    action: ClaimAction
    def __init__(self, payment_number: _Optional[int] = ..., action: _Optional[_Union[ClaimAction, str]] = ...) -> None: ...

class ClaimWorkChunkResponse(_message.Message):
    __slots__ = ("decisions", "lease_expire_time", "retry_after", "lease_token", "lease_duration")
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[ClaimDecision]
    lease_expire_time: _timestamp_pb2.Timestamp
    retry_after: _duration_pb2.Duration
    lease_token: int
    lease_duration: _duration_pb2.Duration
    def __init__(self, decisions: _Optional[_Iterable[_Union[ClaimDecision, _Mapping]]] = ..., lease_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., lease_token: _Optional[int] = ..., lease_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RenewClaimRequest(_message.Message):
    __slots__ = ("chunk_id", "batch", "claim_id", "lease_token", "payment_numbers", "lease_duration")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    CLAIM_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_NUMBERS_FIELD_NUMBER: _ClassVar[int]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    batch: str
    claim_id: str
    lease_token: int
    payment_numbers: _containers.RepeatedScalarFieldContainer[int]
    lease_duration: _duration_pb2.Duration
    def __init__(self, chunk_id: _Optional[str] = ..., batch: _Optional[str] = ..., claim_id: _Optional[str] = ..., lease_token: _Optional[int] = ..., payment_numbers: _Optional[_Iterable[int]] = ..., lease_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RenewClaimResponse(_message.Message):
    __slots__ = ("lease_expire_time", "lease_duration")
    LEASE_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    lease_expire_time: _timestamp_pb2.Timestamp
    lease_duration: _duration_pb2.Duration
    def __init__(self, lease_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lease_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class PaymentResult(_message.Message):
    __slots__ = ("payment_number", "idempotency_key", "outcome", "reason_code", "reason_message", "rail_reference", "complete_time", "rail_executions")
    PAYMENT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RAIL_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_TIME_FIELD_NUMBER: _ClassVar[int]
    RAIL_EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    payment_number: int
    idempotency_key: str
    outcome: RailOutcome
    reason_code: str
    reason_message: str
    rail_reference: str
    complete_time: _timestamp_pb2.Timestamp
    rail_executions: int
    def __init__(self, payment_number: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., outcome: _Optional[_Union[RailOutcome, str]] = ..., reason_code: _Optional[str] = ..., reason_message: _Optional[str] = ..., rail_reference: _Optional[str] = ..., complete_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rail_executions: _Optional[int] = ...) -> None: ...

class ReportResultsRequest(_message.Message):
    __slots__ = ("chunk_id", "batch", "results", "released_payment_numbers", "unknown_payment_numbers", "claim_id", "lease_token", "traceparent")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    RELEASED_PAYMENT_NUMBERS_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_PAYMENT_NUMBERS_FIELD_NUMBER: _ClassVar[int]
    CLAIM_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    batch: str
    results: _containers.RepeatedCompositeFieldContainer[PaymentResult]
    released_payment_numbers: _containers.RepeatedScalarFieldContainer[int]
    unknown_payment_numbers: _containers.RepeatedScalarFieldContainer[int]
    claim_id: str
    lease_token: int
    traceparent: str
    def __init__(self, chunk_id: _Optional[str] = ..., batch: _Optional[str] = ..., results: _Optional[_Iterable[_Union[PaymentResult, _Mapping]]] = ..., released_payment_numbers: _Optional[_Iterable[int]] = ..., unknown_payment_numbers: _Optional[_Iterable[int]] = ..., claim_id: _Optional[str] = ..., lease_token: _Optional[int] = ..., traceparent: _Optional[str] = ...) -> None: ...

class ReportResultsResponse(_message.Message):
    __slots__ = ("chunk_id", "applied_count", "refused_payment_numbers")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    APPLIED_COUNT_FIELD_NUMBER: _ClassVar[int]
    REFUSED_PAYMENT_NUMBERS_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    applied_count: int
    refused_payment_numbers: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, chunk_id: _Optional[str] = ..., applied_count: _Optional[int] = ..., refused_payment_numbers: _Optional[_Iterable[int]] = ...) -> None: ...

class RailNote(_message.Message):
    __slots__ = ("tag", "idempotency_key", "body", "create_time")
    TAG_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    tag: str
    idempotency_key: str
    body: bytes
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, tag: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., body: _Optional[bytes] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RecordRailNotesRequest(_message.Message):
    __slots__ = ("rail", "notes")
    RAIL_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    rail: str
    notes: _containers.RepeatedCompositeFieldContainer[RailNote]
    def __init__(self, rail: _Optional[str] = ..., notes: _Optional[_Iterable[_Union[RailNote, _Mapping]]] = ...) -> None: ...

class RecordRailNotesResponse(_message.Message):
    __slots__ = ("recorded_count",)
    RECORDED_COUNT_FIELD_NUMBER: _ClassVar[int]
    recorded_count: int
    def __init__(self, recorded_count: _Optional[int] = ...) -> None: ...

class ListRailNotesRequest(_message.Message):
    __slots__ = ("rail", "idempotency_keys", "tags", "page_size", "page_token")
    RAIL_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEYS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    rail: str
    idempotency_keys: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    page_size: int
    page_token: str
    def __init__(self, rail: _Optional[str] = ..., idempotency_keys: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRailNotesResponse(_message.Message):
    __slots__ = ("notes", "next_page_token")
    NOTES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    notes: _containers.RepeatedCompositeFieldContainer[RailNote]
    next_page_token: str
    def __init__(self, notes: _Optional[_Iterable[_Union[RailNote, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ClaimFundsBlocksRequest(_message.Message):
    __slots__ = ("rail", "claim_id", "max_requests", "lease_duration")
    RAIL_FIELD_NUMBER: _ClassVar[int]
    CLAIM_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    rail: str
    claim_id: str
    max_requests: int
    lease_duration: _duration_pb2.Duration
    def __init__(self, rail: _Optional[str] = ..., claim_id: _Optional[str] = ..., max_requests: _Optional[int] = ..., lease_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class FundsRequest(_message.Message):
    __slots__ = ("block_id", "action", "batch", "payer_fa", "currency_code", "amount")
    BLOCK_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    PAYER_FA_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    block_id: str
    action: FundsAction
    batch: str
    payer_fa: str
    currency_code: str
    amount: str
    def __init__(self, block_id: _Optional[str] = ..., action: _Optional[_Union[FundsAction, str]] = ..., batch: _Optional[str] = ..., payer_fa: _Optional[str] = ..., currency_code: _Optional[str] = ..., amount: _Optional[str] = ...) -> None: ...

class ClaimFundsBlocksResponse(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[FundsRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[FundsRequest, _Mapping]]] = ...) -> None: ...

class FundsResult(_message.Message):
    __slots__ = ("block_id", "outcome", "reason_message", "bank_reference")
    BLOCK_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    BANK_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    block_id: str
    outcome: FundsOutcome
    reason_message: str
    bank_reference: str
    def __init__(self, block_id: _Optional[str] = ..., outcome: _Optional[_Union[FundsOutcome, str]] = ..., reason_message: _Optional[str] = ..., bank_reference: _Optional[str] = ...) -> None: ...

class ReportFundsBlocksRequest(_message.Message):
    __slots__ = ("rail", "claim_id", "results")
    RAIL_FIELD_NUMBER: _ClassVar[int]
    CLAIM_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    rail: str
    claim_id: str
    results: _containers.RepeatedCompositeFieldContainer[FundsResult]
    def __init__(self, rail: _Optional[str] = ..., claim_id: _Optional[str] = ..., results: _Optional[_Iterable[_Union[FundsResult, _Mapping]]] = ...) -> None: ...

class ReportFundsBlocksResponse(_message.Message):
    __slots__ = ("applied_count",)
    APPLIED_COUNT_FIELD_NUMBER: _ClassVar[int]
    applied_count: int
    def __init__(self, applied_count: _Optional[int] = ...) -> None: ...
