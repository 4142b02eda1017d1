"""Tracing is off by default: without an OTLP setting nothing is installed and the helpers do nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gpo_kernel import tracing


def test_without_settings_no_tracer_provider_or_exporter_is_installed() -> None:
    # In a fresh interpreter, so that no other test's setup is seen.
    program = (
        "import os\n"
        "from opentelemetry import trace\n"
        "from gpo_kernel import tracing\n"
        "assert tracing.configure('gpo-server', os.environ) is False\n"
        "assert not tracing.enabled()\n"
        "assert type(trace.get_tracer_provider()).__name__ == 'ProxyTracerProvider'\n"
        "assert tracing.carrier() == {} and tracing.traceparent() is None\n"
        "assert tracing.httpx_hooks() == {}\n"
        "assert tracing.parent_from({'traceparent': '00-' + '1' * 32 + '-' + '2' * 16 + '-01'}) is None\n"
        "with tracing.span('gpo.test', {'gpo.batch': 'batches/x'}):\n"
        "    assert not trace.get_current_span().get_span_context().is_valid\n"
        "import sys\n"
        "assert 'opentelemetry.sdk.trace' not in sys.modules, 'the SDK is imported only when tracing is on'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GPO_OTLP"))}
    env["OTEL_BSP_SCHEDULE_DELAY"] = "600000"  # no export attempt while it runs
    done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("environ", "endpoint"),
    [
        ({}, None),
        ({"GPO_OTLP_ENDPOINT": "http://collector:4318/"}, "http://collector:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "http://c:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/x"}, "http://c:4318/x"),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "http://localhost:4318/v1/traces"),
        ({"GPO_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, None),
        ({"GPO_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, None),
    ],
)
def test_the_settings_choose_the_endpoint(environ: dict[str, str], endpoint: str | None) -> None:
    assert tracing.endpoint_from(environ) == endpoint


def test_rail_http_calls_carry_the_current_traceparent() -> None:
    """With tracing on, the Mojaloop client's requests carry the sidecar span's traceparent (no span per
    request); in a fresh interpreter, whose exit skips exporting (no collector here)."""
    program = (
        "import asyncio, os, httpx\n"
        "from opentelemetry import trace\n"
        "from gpo_kernel import tracing\n"
        "assert tracing.configure('gpo-sidecar-test', {'GPO_OTLP_ENDPOINT': 'http://127.0.0.1:9'})\n"
        "from rail_sidecars.rails.mojaloop.client import FspiopClient\n"
        "from rail_sidecars.rails.mojaloop.settings import MojaloopSettings\n"
        "seen = []\n"
        "def answer(request):\n"
        "    seen.append(request.headers.get('traceparent'))\n"
        "    return httpx.Response(202)\n"
        "async def main():\n"
        "    settings = MojaloopSettings(rail='ml', base_url='http://hub', payer_fsp='gov')\n"
        "    client = FspiopClient(settings, transport=httpx.MockTransport(answer))\n"
        "    with tracing.span('gpo.sidecar.execute', {'gpo.chunk_id': 'c1'}):\n"
        "        ids = trace.get_current_span().get_span_context()\n"
        "        await client.get('parties', 'MSISDN/1', 'payeefsp')\n"
        "    await client.get('parties', 'MSISDN/2', 'payeefsp')\n"
        "    await client.close()\n"
        "    assert seen[0].startswith(f'00-{ids.trace_id:032x}-{ids.span_id:016x}-'), seen\n"
        "    assert seen[1] is None, seen\n"
        "asyncio.run(main())\n"
        "os._exit(0)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GPO_OTLP"))}
    env["OTEL_BSP_SCHEDULE_DELAY"] = "600000"  # no export attempt while it runs
    done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
