"""Financial addresses and account numbers as logs and API answers may show them: never the full account
number (orchestrator and sidecars)."""

from __future__ import annotations


def mask_fa(fa: str) -> str:
    """For logs: keeps the scheme, the last 4 characters of the identifier and the provider."""
    scheme, _, rest = fa.partition(":")
    ident, _, provider = rest.rpartition("@")
    if not ident:
        return "***"
    return f"{scheme}:***{ident[-4:] if len(ident) > 6 else ''}@{provider}"


def mask_account(account: str) -> str:
    """A bare account number or IBAN (a bank statement's account): its last 4 characters, as mask_fa keeps
    of a financial address's identifier."""
    return f"***{account[-4:]}" if len(account) > 6 else "***"
