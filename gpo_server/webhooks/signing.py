"""Standard Webhooks signatures (standardwebhooks.com): HMAC-SHA256 with a shared secret over
"{webhook-id}.{webhook-timestamp}.{body}", so any receiver verifies with its standard library or one of
the scheme's libraries in many languages, with no key distribution beyond the secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from pathlib import Path

PREFIX = "whsec_"


def parse_secret(text: str) -> bytes:
    """A `whsec_<base64>` secret (the scheme's format, which its libraries take as it is) as key bytes."""
    text = text.strip()
    if not text.startswith(PREFIX):
        raise ValueError("a webhook secret is written whsec_ followed by base64 (24 to 64 random bytes)")
    try:
        key = base64.b64decode(text.removeprefix(PREFIX), validate=True)
    except ValueError as exc:
        raise ValueError("a webhook secret is written whsec_ followed by base64") from exc
    if not 24 <= len(key) <= 64:
        raise ValueError("a webhook secret holds 24 to 64 bytes")
    return key


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def local_secret(data_dir: Path) -> str:
    """The embedded default's secret, made once in the data folder, owner-readable only."""
    path = data_dir / "webhook.secret"
    if not path.exists():
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(new_secret() + "\n")
    return path.read_text().strip()


def headers(key: bytes, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    signed = f"{event_id}.{timestamp}.".encode() + body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{signature}",
    }
