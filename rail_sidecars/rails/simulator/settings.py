"""The simulator's settings, from the rails file's options or from a CLI flag's "name=value,…" text."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    ledger_path: str
    latency_ms: float = 0  # added to every execute call
    failure_rate: float = 0.0  # fraction of payments (by key) that fail
    rate_limit: float = 0  # payments per second across the rail; 0 = unlimited
    seed: int | None = None  # None: failures derive from the key alone
    # Fault injection for crash tests only: the process dies (os._exit(137), as if kill -9) right after
    # the N-th execute call is committed to the ledger, before its results reach anybody. 0 = never.
    exit_after_executions: int = 0
    # Fault injection: the N-th execute call stalls stall_s seconds before it records anything (a rail
    # that hangs, e.g. longer than a claim's lease). 0 = never.
    stall_after_executions: int = 0
    stall_s: float = 0.0

    def __post_init__(self) -> None:
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, not {self.latency_ms}")
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError(f"failure_rate must be within [0, 1], not {self.failure_rate}")
        if self.rate_limit < 0:
            raise ValueError(f"rate_limit must be >= 0, not {self.rate_limit}")

    @classmethod
    def parse(cls, text: str, *, ledger_path: str | None = None) -> SimulatorSettings:
        """Settings from "latency_ms=5,failure_rate=0.01,rate_limit=1000,seed=1" (a CLI flag's value).

        ledger_path may be given in the text or as the argument; the text wins.
        """
        known = {f.name for f in fields(cls)}
        values: dict[str, str] = {}
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            name, sep, value = item.partition("=")
            name, value = name.strip(), value.strip()
            if not sep or name not in known:
                raise ValueError(f"bad simulator setting {item!r}; expected name=value of {sorted(known)}")
            values[name] = value
        path = values.pop("ledger_path", ledger_path)
        if not path:
            raise ValueError("the simulator needs a ledger_path")
        seed = values.get("seed", "")
        return cls(
            ledger_path=path,
            latency_ms=float(values.get("latency_ms", 0)),
            failure_rate=float(values.get("failure_rate", 0.0)),
            rate_limit=float(values.get("rate_limit", 0)),
            seed=None if seed.lower() in ("", "none") else int(seed),
            exit_after_executions=int(values.get("exit_after_executions", 0)),
            stall_after_executions=int(values.get("stall_after_executions", 0)),
            stall_s=float(values.get("stall_s", 0.0)),
        )
