"""Who uses the console: the operator's JWT, kept in a cookie, and the CSRF token bound to it.

The console holds no identity of its own: each page calls DisbursementService with the JWT the user gave
on the login page, so the API's checks decide what is shown and what is done. The JWT is verified here
too, but only to say who is signed in and whether to offer the operator's (or the approver's) actions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from gpo_server.api.auth import (
    APPROVER_ROLE,
    OPERATOR_ROLE,
    SIDECAR_ROLE,
    Authenticator,
    permission_denied,
    unauthenticated,
)

TOKEN_COOKIE = "gpo_console"
LOGIN_COOKIE = "gpo_console_login"  # double-submit nonce of the login form (no session exists yet)


@dataclass(frozen=True, slots=True)
class Viewer:
    token: str
    subject: str
    is_operator: bool
    expires: dt.datetime
    is_approver: bool = False  # maker-checker: may approve or reject batches awaiting approval

    @property
    def role(self) -> str:
        return "operator" if self.is_operator else "approver" if self.is_approver else "reader"


class Sessions:
    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth
        # CSRF tokens are an HMAC of the session's JWT under a key of this process: a restart only
        # invalidates open forms.
        self._key = secrets.token_bytes(32)

    def viewer(self, token: str) -> Viewer:
        """The signed-in user of a JWT; raises ApiError (UNAUTHENTICATED, PERMISSION_DENIED) if refused."""
        claims = self.auth.verify(token)
        roles = claims.get("roles", [])
        if not isinstance(roles, list):
            raise unauthenticated("the token's roles claim must be a list of strings")
        if SIDECAR_ROLE in roles:
            raise permission_denied("a rail sidecar's token cannot sign in to the console")
        return Viewer(
            token=token,
            subject=str(claims.get("sub", "")),
            is_operator=OPERATOR_ROLE in roles,
            is_approver=APPROVER_ROLE in roles,
            expires=dt.datetime.fromtimestamp(int(claims["exp"]), dt.UTC),
        )

    def csrf_token(self, viewer_token: str) -> str:
        return hmac.new(self._key, viewer_token.encode(), hashlib.sha256).hexdigest()

    def csrf_valid(self, viewer_token: str, sent: str) -> bool:
        return hmac.compare_digest(self.csrf_token(viewer_token), sent)
