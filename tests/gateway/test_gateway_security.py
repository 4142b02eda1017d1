"""The REST gateway at the trust boundary (issue 12, items 4 and 5): HTTPS on its side, mTLS to GPO, and
no body read from a caller who has not even sent a token.

Measured on 6605833: one unauthenticated 300 MB POST took the gateway from 17 MB to 1,088 MB before any
token was checked. Each test here reads the gateway's resident memory from /proc while it refuses.
"""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path

import httpx

from gpo_kernel.tls import ClientTls
from tests.clients.live import BUILD, build, live_gpo
from tests.gateway.conftest import Gateway
from tests.support.certificates import cluster_tls
from tests.support.processes import Proc, free_port

BIG = 300 * 1024 * 1024  # what the caller claims to send


def rss_mb(proc: Proc) -> float:
    assert proc.popen is not None
    for line in Path(f"/proc/{proc.popen.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def post_big(url: str, path: str, headers: dict[str, str]) -> tuple[int, int]:
    """POSTs a body of BIG bytes as fast as the gateway takes it; returns (HTTP status, bytes it took)."""
    host, port = url.removeprefix("http://").split(":")
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        f"Content-Length: {BIG}",
        "Content-Type: application/json",
    ]
    head += [f"{k}: {v}" for k, v in headers.items()]
    block = b'{"header":{}}\n' + b" " * (1024 * 1024 - 15)
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sock.setblocking(False)
        reply = b""
        deadline = time.monotonic() + 120
        while b"\r\n" not in reply and time.monotonic() < deadline:
            try:
                reply += sock.recv(65536)
            except BlockingIOError:
                pass
            except OSError:
                break
            if sent < BIG and b"\r\n" not in reply:
                try:
                    sent += sock.send(block)
                except BlockingIOError:
                    time.sleep(0.001)
                except OSError:
                    break
        sock.setblocking(True)
        while b"\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    return int(reply.split(b" ", 2)[1]), sent


def test_an_unauthenticated_upload_is_refused_before_its_body(gateway: Gateway) -> None:
    before = rss_mb(gateway.proc)
    status, sent = post_big(gateway.url, "/v1/batches:upload", {})
    after = rss_mb(gateway.proc)
    print(
        f"gateway RSS {before:.1f} MB -> {after:.1f} MB; it took {sent / 2**20:.1f} of 300 MB before its 401"
    )
    assert status == 401
    assert sent < BIG / 10, "the gateway read the body of a call it was bound to refuse"
    assert after - before < 64, f"RSS grew from {before:.1f} to {after:.1f} MB"


def test_an_unauthenticated_g2p_message_is_refused_before_its_body(gateway: Gateway) -> None:
    """The measurement of the issue: 300 MB to /disburse without a token (1,088 MB before)."""
    before = rss_mb(gateway.proc)
    status, sent = post_big(gateway.url, "/disburse", {})
    after = rss_mb(gateway.proc)
    print(
        f"gateway RSS {before:.1f} MB -> {after:.1f} MB; it took {sent / 2**20:.1f} of 300 MB before its 401"
    )
    assert status == 401
    assert sent < BIG / 10
    assert after - before < 64, f"RSS grew from {before:.1f} to {after:.1f} MB"
    answer = httpx.post(f"{gateway.url}/disburse", content=b"{}")
    assert (answer.status_code, answer.json()["errors"][0]["code"]) == (401, "err.request.unauthorized")


def test_an_oversized_g2p_body_is_413_in_bounded_memory(gateway: Gateway) -> None:
    before = rss_mb(gateway.proc)
    status, _ = post_big(gateway.url, "/disburse", {"Authorization": f"Bearer {gateway.gpo.token(['x'])}"})
    after = rss_mb(gateway.proc)
    print(f"gateway RSS {before:.1f} MB -> {after:.1f} MB on a 300 MB G2P Connect body")
    assert status == 413
    assert after - before < 96, f"RSS grew from {before:.1f} to {after:.1f} MB"


def test_https_outside_and_mtls_to_gpo(tmp_path: Path) -> None:
    """GPO serving mTLS only; the gateway in front of it serves HTTPS and presents its certificate."""
    build("gateway")
    files = cluster_tls(tmp_path / "ca")
    server_tls = {
        "GPO_TLS_CERT_FILE": str(files["server_cert"]),
        "GPO_TLS_KEY_FILE": str(files["server_key"]),
        "GPO_TLS_CLIENT_CA_FILE": str(files["ca"]),
        "GPO_TLS_CA_FILE": str(files["ca"]),
        "GPO_TLS_CLIENT_CERT_FILE": str(files["client_cert"]),
        "GPO_TLS_CLIENT_KEY_FILE": str(files["client_key"]),
    }
    client_tls = ClientTls(files["ca"], files["client_cert"], files["client_key"])
    (tmp_path / "gpo").mkdir()
    with live_gpo(tmp_path / "gpo", server_tls, tls=client_tls) as gpo:
        port = free_port()
        gateway = Proc(
            "gpo-gateway",
            [
                str(BUILD / "gpo-gateway"),
                "-listen",
                f"127.0.0.1:{port}",
                "-backend",
                gpo.target,
                "-backend-tls",
                str(files["ca"]),
                "-backend-client-cert",
                str(files["client_cert"]),
                "-backend-client-key",
                str(files["client_key"]),
                "-tls-cert",
                str(files["server_cert"]),
                "-tls-key",
                str(files["server_key"]),
            ],
            {},
            tmp_path / "gateway.log",
        ).start()
        # Without its client certificate, a gateway is refused by GPO: /healthz reports the backend down.
        plain_port = free_port()
        uncertified = Proc(
            "gpo-gateway-uncertified",
            [
                str(BUILD / "gpo-gateway"),
                "-listen",
                f"127.0.0.1:{plain_port}",
                "-backend",
                gpo.target,
                "-backend-tls",
                str(files["ca"]),
            ],
            {},
            tmp_path / "uncertified.log",
        ).start()
        try:
            url = f"https://127.0.0.1:{port}"
            auth = {"Authorization": f"Bearer {gpo.token(['p'])}"}
            with httpx.Client(verify=str(files["ca"]), timeout=10) as https:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if https.get(f"{url}/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert time.monotonic() < deadline, gateway.tail()
                    time.sleep(0.2)
                listed = https.get(f"{url}/v1/batches", headers=auth)
                assert listed.status_code == 200, listed.text
                missing = https.get(f"{url}/v1/batches/{uuid.uuid4()}", headers=auth)
                assert missing.status_code == 404
            # Plain HTTP to the HTTPS port is refused (Go answers 400 and serves nothing).
            plain = httpx.get(f"http://127.0.0.1:{port}/v1/batches", headers=auth, timeout=5)
            assert plain.status_code == 400 and "HTTPS" in plain.text
            deadline = time.monotonic() + 30
            while True:
                try:
                    answer = httpx.get(f"http://127.0.0.1:{plain_port}/v1/batches", headers=auth, timeout=10)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, uncertified.tail()
                    time.sleep(0.2)
            assert answer.status_code == 503, answer.text
        finally:
            gateway.terminate()
            uncertified.terminate()
