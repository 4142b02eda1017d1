"""Webhook signing (checked with the third-party `standardwebhooks` library), the exact payload, and where a
webhook may be sent (SSRF rules)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import time
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gpo_server.config import Settings
from gpo_server.domain.states import BatchState, PaymentStatus
from gpo_server.storage.store import StatusTotal
from gpo_server.storage.webhooks import EventFacts
from gpo_server.webhooks import payload, signing
from gpo_server.webhooks.destinations import Destinations, Refused, parse_networks


def test_signatures_verify_with_the_standard_webhooks_library() -> None:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    body = b'{"event_id":"e1","amount":"0.10"}'
    headers = signing.headers(signing.parse_secret(secret), "e1", int(time.time()), body)
    assert Webhook(secret).verify(body, headers) == {"event_id": "e1", "amount": "0.10"}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"0.10", b"9.10"), headers)
    other = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)
    stale = signing.headers(signing.parse_secret(secret), "e1", int(time.time()) - 3600, body)
    with pytest.raises(WebhookVerificationError):  # outside the receiver's replay window
        Webhook(secret).verify(body, stale)


@pytest.mark.parametrize(
    "bad", ["", "secret", "whsec_not base64!", "whsec_" + base64.b64encode(b"short").decode()]
)
def test_a_malformed_secret_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="webhook secret"):
        signing.parse_secret(bad)


def test_the_payload_sums_exact_amounts_per_status_and_currency() -> None:
    facts = EventFacts(
        event_id="e1",
        sequence=3,
        batch_uid="b1",
        program="p",
        request_id="r",
        state=BatchState.COMPLETED,
        payment_count=4,
        unfinished_count=0,
        totals=[
            StatusTotal(PaymentStatus.SUCCEEDED, "KES", 2, 99_999_999_999_999_999),
            StatusTotal(PaymentStatus.SUCCEEDED, "USD", 1, 1),
            StatusTotal(PaymentStatus.FAILED, "KES", 1, 10),
        ],
        occurred_at=dt.datetime(2026, 6, 30, 9, 0, 0, 5000, tzinfo=dt.UTC),
    )
    kind, body = payload.render(facts)
    event = json.loads(body)
    assert kind == event["type"] == "batch.completed"
    assert event["occurred_at"] == "2026-06-30T09:00:00.005Z"
    assert event["statuses"] == {
        "failed": {"count": 1, "amounts": {"KES": "0.10"}},
        "succeeded": {"count": 3, "amounts": {"KES": "999999999999999.99", "USD": "0.01"}},
    }
    assert (event["batch"], event["sequence"], event["state"]) == ("batches/b1", 3, "completed")


async def test_webhooks_reach_public_addresses_only_unless_a_network_is_allowed() -> None:
    closed = Destinations()
    for uri in (
        "https://127.0.0.1/cb",
        "https://localhost:8443/cb",
        "https://10.1.2.3/cb",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "https://[::1]/cb",
        "https://[fc00::1]/cb",
        "https://0.0.0.0/cb",
        "ftp://example.org/cb",
    ):
        with pytest.raises(Refused):
            await closed.resolve(uri)
    loopback = Destinations(parse_networks("127.0.0.0/8, ::1/128"))
    target = await loopback.resolve("https://127.0.0.1:8443/hooks?x=1")
    assert (target.url, target.host_header, target.server_name) == (
        "https://127.0.0.1:8443/hooks?x=1",
        "127.0.0.1:8443",
        "127.0.0.1",
    )
    # A name is connected to at the address that was checked; the certificate is checked for the name.
    named = await loopback.resolve("https://localhost:8443/hooks")
    assert named.url in ("https://127.0.0.1:8443/hooks", "https://[::1]:8443/hooks")
    assert (named.host_header, named.server_name) == ("localhost:8443", "localhost")
    with pytest.raises(Refused, match=r"10\.1\.2\.3"):
        await loopback.resolve("https://10.1.2.3/cb")
    assert (await loopback.resolve("http://127.0.0.1:8080/cb")).url == "http://127.0.0.1:8080/cb"
    with pytest.raises(Refused, match="plain http"):
        await Destinations(parse_networks("10.0.0.0/8")).resolve("http://93.184.216.34/cb")


def test_the_secret_comes_from_settings_a_file_or_embedded_the_data_folder(tmp_path: Path) -> None:
    given = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    assert Settings(webhook_secret=given).webhook_signing_secret() == given
    (tmp_path / "secret").write_text(given + "\n")
    assert Settings(webhook_secret_file=str(tmp_path / "secret")).webhook_signing_secret() == given
    embedded = Settings(data_dir=tmp_path / "data")
    made = embedded.webhook_signing_secret()
    assert signing.parse_secret(made) and embedded.webhook_signing_secret() == made  # made once, kept
    assert (tmp_path / "data" / "webhook.secret").stat().st_mode & 0o777 == 0o600
    # With RabbitMQ, replicas must share one secret: none configured means webhooks are off.
    assert Settings(data_dir=tmp_path / "data", amqp_url="amqp://x").webhook_signing_secret() == ""
