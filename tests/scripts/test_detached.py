"""scripts/lib/detached.sh: a server started by a script must not keep the caller's output open.

services.sh is read through `$(...)` in test.sh; a server that inherited that pipe made CI wait for ever.
"""

import subprocess
import time
from pathlib import Path

DETACHED_SH = Path(__file__).resolve().parents[2] / "scripts" / "lib" / "detached.sh"

# Like services.sh: stdout is saved on fd 3 for the result, then a "server" that puts itself in the
# background (as `rabbitmq-server -detached` and `pg_ctlcluster start` do) is started.
SCRIPT = """
exec 3>&1 1>&2
. {lib}
{start} sh -c 'sleep 8 &' >/dev/null 2>&1
echo URL >&3
"""


def _read_through_command_substitution(start: str) -> tuple[str, float]:
    script = SCRIPT.format(lib=DETACHED_SH, start=start)
    began = time.monotonic()
    result = subprocess.run(
        ["bash", "-c", 'out=$(bash -c "$0"); echo "$out"', script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip(), time.monotonic() - began


def test_a_detached_server_does_not_hold_the_callers_pipe() -> None:
    output, seconds = _read_through_command_substitution("detached")
    assert output == "URL"
    assert seconds < 6, "the caller waited for the background process: a descriptor leaked to it"


def test_without_detached_the_caller_waits_for_the_server() -> None:
    # The control: shows the test above would fail if detached() closed nothing.
    output, seconds = _read_through_command_substitution("")
    assert output == "URL"
    assert seconds >= 7
