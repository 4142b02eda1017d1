"""Audit events of API calls: who (the token's subject and kind, the certificate's subject), what, and the
call's request id. The store appends them in the same transaction as the change they record."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpo_server.api.auth import Caller
from gpo_server.api.errors import Context
from gpo_server.storage.audit import AuditEvent


def audit_event(
    caller: Caller,
    action: str,
    context: Context | None = None,
    *,
    request_id: str = "",
    batch_uid: str = "",
    detail: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """An event for `caller`'s call; without a request id of its own, the call's x-request-id metadata."""
    if not request_id and context is not None:
        request_id = next(
            (str(v) for k, v in (context.invocation_metadata() or ()) if k == "x-request-id"), ""
        )
    # A token's subject, a certificate's subject and request-id metadata come from the caller: kept within
    # the bounds AuditEvent documents.
    return AuditEvent(
        action=action,
        subject=caller.subject[:256],
        caller_kind=caller.kind,
        certificate_subject=caller.certificate[:1024],
        batch_uid=batch_uid,
        request_id=request_id[:128],
        detail=dict(detail or {}),
    )
