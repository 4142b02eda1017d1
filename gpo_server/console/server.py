"""The web console (docs/CONSOLE.md): server-rendered pages over DisbursementService, on a port of its own.

Every page calls the API over a gRPC channel to this same server with the signed-in user's JWT, so the
console sees and does exactly what that token may through the API, audited as any other call. Templates
autoescape everything (payee names and reason messages are untrusted); financial addresses are shown
masked; POSTs need the session's CSRF token; actions need the operator role (approving and rejecting a
batch, the approver role) and a confirmation page, and each carries a request id made on that page, so
submitting it twice acts once.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
import ssl
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jinja2
from aiohttp import web
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import disbursement_service_pb2_grpc as api_grpc

from gpo_server.api.errors import ApiError
from gpo_server.console import views
from gpo_server.console.session import LOGIN_COOKIE, TOKEN_COOKIE, Sessions, Viewer

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Pages load nothing but the console's own files: no CDN, no inline script, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self';"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_VIEWER = web.RequestKey("viewer", Viewer)
_OPEN_PATHS = ("/login", "/static/", "/favicon.ico")
_REQUEST_ID = re.compile(r"[0-9a-f-]{36}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{32}")
_HTTP_OF = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
}
ATTENTION_BATCHES = 50  # the attention page reads the newest this many batches


@dataclass(frozen=True, slots=True)
class Action:
    title: str
    explanation: str
    name_pattern: re.Pattern[str]
    # (stub, name, request_id, metadata, reason) -> the API's answer
    call: Callable[[api_grpc.DisbursementServiceStub, str, str, Any, str], Awaitable[Any]]
    role: str = "operator"  # who is offered it: "operator", or "approver" (maker-checker)
    needs_reason: bool = False  # the confirmation page asks why (a rejection)


def _payment_call(method: str, request_type: Any) -> Callable[..., Awaitable[Any]]:
    def call(
        stub: api_grpc.DisbursementServiceStub, name: str, request_id: str, metadata: Any, reason: str
    ) -> Any:
        return getattr(stub, method)(request_type(name=name, request_id=request_id), metadata=metadata)

    return call


def _reject_call(
    stub: api_grpc.DisbursementServiceStub, name: str, request_id: str, metadata: Any, reason: str
) -> Any:
    return stub.RejectBatch(
        api_pb.RejectBatchRequest(name=name, request_id=request_id, reason=reason), metadata=metadata
    )


_PAYMENT_NAME = re.compile(r"batches/[^/]+/payments/.+", re.DOTALL)
_BATCH_NAME = re.compile(r"batches/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAX_REASON = 1024
ACTIONS: Mapping[str, Action] = {
    "approve": Action(
        "Approve batch",
        "Your approval counts once; the batch's uploader may not approve it. The last approval its "
        "program's policy requires releases it: its payments are sent.",
        _BATCH_NAME,
        _payment_call("ApproveBatch", api_pb.ApproveBatchRequest),
        role="approver",
    ),
    "reject": Action(
        "Reject batch",
        "The batch is cancelled: none of its payments is sent. Your reason is kept with the batch and in "
        "the audit trail.",
        _BATCH_NAME,
        _reject_call,
        role="approver",
        needs_reason=True,
    ),
    "redrive": Action(
        "Re-drive dead letter",
        "Its never-claimed payments (ACCEPTED, QUEUED) are sent again with their own idempotency keys; "
        "payments a rail already claimed are left to rail look-ups.",
        re.compile(r"deadLetters/[1-9][0-9]{0,17}"),
        _payment_call("RedriveDeadLetter", api_pb.RedriveDeadLetterRequest),
    ),
    "resolve": Action(
        "Resolve attention payment",
        "A SENT payment is looked up on its rail, whose answer settles it; a never-claimed one is sent "
        "again with its key; a final one has its flag cleared. Nothing is executed blindly.",
        _PAYMENT_NAME,
        _payment_call("ResolvePayment", api_pb.ResolvePaymentRequest),
    ),
    "cancel": Action(
        "Cancel payment",
        "Only a payment no rail has claimed yet (ACCEPTED or QUEUED) is cancelled.",
        _PAYMENT_NAME,
        _payment_call("CancelPayment", api_pb.CancelPaymentRequest),
    ),
    "retry": Action(
        "Retry payment",
        "A FAILED payment is sent again: with a new idempotency key if the rail refused it for good, with "
        "its old key if the rail could not be reached.",
        _PAYMENT_NAME,
        _payment_call("RetryPayment", api_pb.RetryPaymentRequest),
    ),
}


class Console:
    def __init__(self, sessions: Sessions, channel: grpc.aio.Channel, *, secure: bool) -> None:
        """channel: to this orchestrator's own gRPC port; secure: served over TLS (cookies get Secure)."""
        self.sessions = sessions
        self.channel = channel
        self.stub = api_grpc.DisbursementServiceStub(channel)
        self.secure = secure
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self._runner: web.AppRunner | None = None

    # ---- serving --------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers, self._signed_in], client_max_size=64 * 1024)
        app.router.add_static("/static/", HERE / "static", follow_symlinks=False)
        app.router.add_get("/login", self.login_page)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)
        app.router.add_get("/", self.home)
        app.router.add_get("/batches", self.batches)
        app.router.add_get("/batches/{batch}", self.batch)
        app.router.add_get("/batches/{batch}/progress", self.progress)
        app.router.add_get("/payment", self.payment)
        app.router.add_get("/rails", self.rails)
        app.router.add_get("/attention", self.attention)
        app.router.add_get("/dead-letters", self.dead_letters)
        app.router.add_get("/cycles", self.cycles)
        app.router.add_get("/approvals", self.approvals)
        app.router.add_get("/confirm", self.confirm)
        app.router.add_post("/act", self.act)
        return app

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> int:
        """Serves on host:port (0: any free port); returns the port."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self.channel.close()

    # ---- middleware -----------------------------------------------------------------------------

    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except grpc.aio.AioRpcError as error:
            response = self._api_error(request, error)
        except web.HTTPException as refusal:  # redirects and refusals carry the headers too
            for key, value in SECURITY_HEADERS.items():
                refusal.headers.setdefault(key, value)
            raise
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    @web.middleware
    async def _signed_in(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(_OPEN_PATHS):
            return await handler(request)
        token = request.cookies.get(TOKEN_COOKIE, "")
        try:
            viewer = self.sessions.viewer(token) if token else None
        except ApiError:
            viewer = None
        if viewer is None:
            response = web.HTTPSeeOther("/login")
            response.del_cookie(TOKEN_COOKIE, path="/")
            return response
        request[_VIEWER] = viewer
        return await handler(request)

    # ---- rendering ------------------------------------------------------------------------------

    def _page(self, request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
        viewer: Viewer | None = request.get(_VIEWER)
        body = self.templates.get_template(template).render(
            viewer=viewer,
            csrf=self.sessions.csrf_token(viewer.token) if viewer else "",
            path=request.path,
            **values,
        )
        return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")

    def _api_error(self, request: web.Request, error: grpc.aio.AioRpcError) -> web.StreamResponse:
        code = error.code()
        if code == grpc.StatusCode.UNAUTHENTICATED:
            response = web.HTTPSeeOther("/login")
            response.del_cookie(TOKEN_COOKIE, path="/")
            return response
        return self._page(
            request,
            "error.html",
            status=_HTTP_OF.get(code, 502),
            code=code.name if code else "UNKNOWN",
            message=error.details() or "",
        )

    def _metadata(self, request: web.Request) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {request[_VIEWER].token}"),)

    def _set_token_cookie(self, response: web.StreamResponse, viewer: Viewer) -> None:
        max_age = max(0, int((viewer.expires - dt.datetime.now(dt.UTC)).total_seconds()))
        response.set_cookie(
            TOKEN_COOKIE,
            viewer.token,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self.secure,
        )

    # ---- sign in and out ------------------------------------------------------------------------

    async def login_page(self, request: web.Request, problem: str = "", status: int = 200) -> web.Response:
        # Kept while the browser has one: another tab, or a fetch redirected here, must not void this form.
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not _NONCE.fullmatch(nonce):
            nonce = secrets.token_urlsafe(24)
        response = self._page(request, "login.html", status=status, nonce=nonce, problem=problem)
        response.set_cookie(
            LOGIN_COOKIE, nonce, path="/login", httponly=True, samesite="Strict", secure=self.secure
        )
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        nonce = str(form.get("nonce", ""))
        if not nonce or not secrets.compare_digest(nonce, request.cookies.get(LOGIN_COOKIE, "")):
            return await self.login_page(request, "The sign-in form expired; please try again.", 400)
        token = str(form.get("token", "")).strip()
        try:
            viewer = self.sessions.viewer(token)
        except ApiError as error:
            return await self.login_page(request, f"Token refused: {error.message}", 401)
        log.info("console: %s signed in (%s)", viewer.subject, viewer.role)
        response = web.HTTPSeeOther("/batches")
        self._set_token_cookie(response, viewer)
        response.del_cookie(LOGIN_COOKIE, path="/login")
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        await self._require_csrf(request)
        response = web.HTTPSeeOther("/login")
        response.del_cookie(TOKEN_COOKIE, path="/")
        return response

    async def _require_csrf(self, request: web.Request) -> Mapping[str, Any]:
        form = await request.post()
        if not self.sessions.csrf_valid(request[_VIEWER].token, str(form.get("csrf", ""))):
            raise web.HTTPForbidden(text="missing or wrong CSRF token")
        return form

    # ---- read views -----------------------------------------------------------------------------

    async def home(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther("/batches")

    async def batches(self, request: web.Request) -> web.Response:
        state = request.query.get("state", "")
        page_token = request.query.get("page_token", "")
        if state and state not in views.BATCH_STATES:
            raise web.HTTPBadRequest(text="unknown state")
        listed = await self.stub.ListBatches(
            api_pb.ListBatchesRequest(
                page_size=50, page_token=page_token, filter=f"state = {state}" if state else ""
            ),
            metadata=self._metadata(request),
        )
        return self._page(
            request,
            "batches.html",
            batches=[views.batch_view(b) for b in listed.batches],
            state=state,
            states=views.BATCH_STATES,
            next_page_token=listed.next_page_token,
        )

    async def batch(self, request: web.Request) -> web.Response:
        name = f"batches/{request.match_info['batch']}"
        status = request.query.get("status", "")
        if status and status not in views.PAYMENT_STATUSES:
            raise web.HTTPBadRequest(text="unknown status")
        page_token = request.query.get("page_token", "")
        metadata = self._metadata(request)
        batch = await self.stub.GetBatch(api_pb.GetBatchRequest(name=name), metadata=metadata)
        listed = await self.stub.ListPayments(
            api_pb.ListPaymentsRequest(
                parent=name,
                page_size=100,
                page_token=page_token,
                filter=f"status = {status}" if status else "",
            ),
            metadata=metadata,
        )
        failed = await self.stub.ListPayments(
            api_pb.ListPaymentsRequest(parent=name, page_size=views.REASON_SAMPLE, filter="status = FAILED"),
            metadata=metadata,
        )
        return self._page(
            request,
            "batch.html",
            batch=views.batch_view(batch),
            funds_blocks=views.funds_block_views(batch),
            payments=[views.payment_view(p) for p in listed.payments],
            status_filter=status,
            statuses=views.PAYMENT_STATUSES,
            next_page_token=listed.next_page_token,
            failure_reasons=views.reason_counts(failed.payments),
            reasons_sampled=bool(failed.next_page_token),
            reason_sample=views.REASON_SAMPLE,
        )

    async def progress(self, request: web.Request) -> web.Response:
        name = f"batches/{request.match_info['batch']}"
        batch = await self.stub.GetBatch(api_pb.GetBatchRequest(name=name), metadata=self._metadata(request))
        return web.json_response(views.progress_json(views.batch_view(batch)))

    async def payment(self, request: web.Request) -> web.Response:
        name = request.query.get("name", "")
        batch, separator, reference = name.partition("/payments/")
        if not separator or not batch.startswith("batches/"):
            raise web.HTTPBadRequest(text="name must be batches/{batch}/payments/{reference_id}")
        metadata = self._metadata(request)
        found = await self.stub.ListPayments(
            api_pb.ListPaymentsRequest(
                parent=batch, page_size=10, filter=f"reference_id = {views.quoted(reference)}"
            ),
            metadata=metadata,
        )
        if not found.payments:
            raise web.HTTPNotFound(text="no such payment")
        history = await self.stub.ListStatusChanges(
            api_pb.ListStatusChangesRequest(parent=name, page_size=1000), metadata=metadata
        )
        return self._page(
            request,
            "payment.html",
            payments=[views.payment_view(p) for p in found.payments],
            history=[views.change_view(c) for c in history.status_changes],
            batch_uid=batch.removeprefix("batches/"),
        )

    async def rails(self, request: web.Request) -> web.Response:
        try:
            window = int(request.query.get("window", "300"))
        except ValueError:
            raise web.HTTPBadRequest(text="window must be a number of seconds") from None
        stats = await self.stub.ListRailStats(
            api_pb.ListRailStatsRequest(window_seconds=window), metadata=self._metadata(request)
        )
        return self._page(
            request,
            "rails.html",
            rails=[views.rail_view(r, stats.window_seconds) for r in stats.rail_stats],
            window=stats.window_seconds,
            windows=views.RAIL_WINDOWS,
            read_time=views.time_text(stats.read_time),
        )

    async def attention(self, request: web.Request) -> web.Response:
        metadata = self._metadata(request)
        listed = await self.stub.ListBatches(
            api_pb.ListBatchesRequest(page_size=ATTENTION_BATCHES), metadata=metadata
        )
        flagged: list[views.PaymentView] = []
        for batch in listed.batches:
            found = await self.stub.ListPayments(
                api_pb.ListPaymentsRequest(parent=batch.name, page_size=100, filter="attention = true"),
                metadata=metadata,
            )
            flagged.extend(views.payment_view(p) for p in found.payments)
        return self._page(request, "attention.html", payments=flagged, batches_read=len(listed.batches))

    async def dead_letters(self, request: web.Request) -> web.Response:
        listed = await self.stub.ListDeadLetters(
            api_pb.ListDeadLettersRequest(page_size=100, page_token=request.query.get("page_token", "")),
            metadata=self._metadata(request),
        )
        return self._page(
            request,
            "dead_letters.html",
            dead_letters=[views.dead_letter_view(d) for d in listed.dead_letters],
            next_page_token=listed.next_page_token,
        )

    async def cycles(self, request: web.Request) -> web.Response:
        """Programs' cycles with their budgets and totals per currency (docs/TREASURY.md)."""
        program = request.query.get("program", "")
        listed = await self.stub.ListCycles(
            api_pb.ListCyclesRequest(
                parent=f"programs/{program or '-'}", page_token=request.query.get("page_token", "")
            ),
            metadata=self._metadata(request),
        )
        return self._page(
            request,
            "cycles.html",
            cycles=[views.cycle_view(c) for c in listed.cycles],
            program=program,
            next_page_token=listed.next_page_token,
        )

    async def approvals(self, request: web.Request) -> web.Response:
        """Batches awaiting approval (maker-checker), with their approvals so far."""
        listed = await self.stub.ListBatches(
            api_pb.ListBatchesRequest(
                page_size=50,
                page_token=request.query.get("page_token", ""),
                filter="state = AWAITING_APPROVAL",
            ),
            metadata=self._metadata(request),
        )
        return self._page(
            request,
            "approvals.html",
            batches=[views.batch_view(b) for b in listed.batches],
            next_page_token=listed.next_page_token,
        )

    # ---- actions --------------------------------------------------------------------------------

    def _action(self, request: web.Request, kind: str, name: str) -> Action:
        action = ACTIONS.get(kind)
        viewer: Viewer = request[_VIEWER]
        allowed = (
            viewer.is_approver if action is not None and action.role == "approver" else viewer.is_operator
        )
        if not allowed:
            role = action.role if action is not None else "operator"
            raise web.HTTPForbidden(text=f"this console action needs the {role} role")
        if action is None or not action.name_pattern.fullmatch(name):
            raise web.HTTPBadRequest(text="unknown action or malformed name")
        return action

    async def confirm(self, request: web.Request) -> web.Response:
        kind, name = request.query.get("action", ""), request.query.get("name", "")
        action = self._action(request, kind, name)
        return self._page(
            request,
            "confirm.html",
            kind=kind,
            action=action,
            name=name,
            request_id=str(uuid.uuid4()),
            back=views.safe_back(request.query.get("back", "")),
        )

    async def act(self, request: web.Request) -> web.Response:
        form = await self._require_csrf(request)
        kind, name = str(form.get("action", "")), str(form.get("name", ""))
        action = self._action(request, kind, name)
        request_id = str(form.get("request_id", ""))
        if not _REQUEST_ID.fullmatch(request_id):
            raise web.HTTPBadRequest(text="request_id must be a UUID")
        reason = str(form.get("reason", "")).strip()
        if action.needs_reason and not reason:
            raise web.HTTPBadRequest(text="say why: a reason is required")
        if len(reason) > MAX_REASON:
            raise web.HTTPBadRequest(text=f"a reason has at most {MAX_REASON} characters")
        viewer: Viewer = request[_VIEWER]
        result = await action.call(self.stub, name, request_id, self._metadata(request), reason)
        log.info("console: %s asked to %s %s (request id %s)", viewer.subject, kind, name, request_id)
        return self._page(
            request,
            "done.html",
            action=action,
            name=name,
            request_id=request_id,
            outcome=views.outcome_view(result),
        )
