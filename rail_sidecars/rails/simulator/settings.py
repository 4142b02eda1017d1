"""The simulator's settings, from the rails file's options or from a CLI flag's "name=value,…" text."""

from __future__ import annotations

from dataclasses import dataclass, replace

from gpo_kernel.money import InvalidAmount, parse_amount
from gpo_kernel.rails_config import ConfigError, RailConfig
from rail_sidecars.sdk.options import Options


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    ledger_path: str
    latency_ms: float = 0  # added to every execute call
    failure_rate: float = 0.0  # fraction of payments (by key) that fail
    # Payments per second across the rail, 0 = unlimited: carried from the CLI flag to the runner, which
    # applies it (the rail never paces itself).
    rate_limit: float = 0
    seed: int | None = None  # None: failures derive from the key alone
    # Fault injection for crash tests only: the process dies (os._exit(137), as if kill -9) right after
    # the N-th execute call is committed to the ledger, before its results reach anybody. 0 = never.
    exit_after_executions: int = 0
    # Fault injection: the N-th execute call stalls stall_s seconds before it records anything (a rail
    # that hangs, e.g. longer than a claim's lease). 0 = never.
    stall_after_executions: int = 0
    stall_s: float = 0.0
    # The simulated bank's balances (docs/TREASURY.md): (payer_fa, currency, hundredths); an account and
    # currency not named is unlimited. From the rails file's `balances` table only.
    balances: tuple[tuple[str, str, int], ...] = ()
    # Funds mode: the bank debits each paid payment against its batch's block or the payer's balance
    # (a rail with funds_control, or balances). Off: the ledger records executions only, as before.
    funds: bool = False
    # Fault injection: the process dies (os._exit(137)) right after the N-th new funds block is committed
    # to the bank, before the answer reaches anybody; 0 = never. And: each new block's answer is held
    # block_stall_s seconds after it is committed (an orchestrator can be killed meanwhile).
    exit_after_blocks: int = 0
    block_stall_s: float = 0.0

    def __post_init__(self) -> None:
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, not {self.latency_ms}")
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError(f"failure_rate must be within [0, 1], not {self.failure_rate}")
        if self.rate_limit < 0:
            raise ValueError(f"rate_limit must be >= 0, not {self.rate_limit}")

    @classmethod
    def parse(cls, text: str, *, ledger_path: str | None = None) -> SimulatorSettings:
        """Settings from "latency_ms=5,failure_rate=0.01,rate_limit=1000,seed=1" (a CLI flag's value):
        the rails file's options (read as there) and the rail's rate_limit.

        ledger_path may be given in the text or as the argument; the text wins.
        """
        values: dict[str, str] = {}
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            name, sep, value = item.partition("=")
            name, value = name.strip(), value.strip()
            if not sep or name not in _OPTIONS | {"rate_limit"}:
                raise ValueError(
                    f"bad simulator setting {item!r}; expected name=value of {sorted(_OPTIONS | {'rate_limit'})}"
                )
            values[name] = value
        rate_limit = values.pop("rate_limit", "0")
        values.setdefault("ledger_path", ledger_path or "")
        if not values["ledger_path"]:
            raise ValueError("the simulator needs a ledger_path")
        options = Options(RailConfig("simulator", "simulator", options=dict(values)), "simulator", _OPTIONS)
        return replace(settings_from_options(options), rate_limit=float(rate_limit))


_OPTIONS = {
    "ledger_path",
    "latency_ms",
    "failure_rate",
    "seed",
    "exit_after_executions",
    "stall_after_executions",
    "stall_s",
    "balances",
    "exit_after_blocks",
    "block_stall_s",
}


def settings_from_options(o: Options) -> SimulatorSettings:
    seed = o.get("seed")
    return SimulatorSettings(
        ledger_path=o.text("ledger_path", "simulator-ledger.db"),
        latency_ms=o.number("latency_ms", 0),
        failure_rate=o.number("failure_rate", 0.0),
        seed=None if seed is None or str(seed).lower() in ("", "none") else o.integer("seed", 0),
        exit_after_executions=o.integer("exit_after_executions", 0),
        stall_after_executions=o.integer("stall_after_executions", 0),
        stall_s=o.number("stall_s", 0.0),
        balances=_balances(o),
        exit_after_blocks=o.integer("exit_after_blocks", 0),
        block_stall_s=o.number("block_stall_s", 0.0),
    )


def _balances(o: Options) -> tuple[tuple[str, str, int], ...]:
    """balances = { "account:treasury-001@central-bank" = { KES = "1000000.00" } }: exact amounts."""
    found = []
    for payer_fa, currencies in o.table("balances").items():
        if not isinstance(currencies, dict):
            raise ConfigError(f"{o.where('balances')}.{payer_fa}: not a table of currency = amount")
        for currency, amount in currencies.items():
            try:
                found.append((str(payer_fa), str(currency), parse_amount(str(amount))))
            except InvalidAmount as exc:
                raise ConfigError(f"{o.where('balances')}.{payer_fa}.{currency}: {exc}") from None
    return tuple(found)


def settings_from_config(config: RailConfig) -> SimulatorSettings:
    """Options: ledger_path (default simulator-ledger.db), latency_ms, failure_rate, seed, balances,
    exit_after_executions, stall_after_executions, stall_s, exit_after_blocks and block_stall_s (fault
    injection for tests). The rail's rate_limit is not among them: the runner applies it, before each
    claim, as for every rail. Funds mode is on for a rail with funds_control or balances."""
    settings = settings_from_options(Options(config, "simulator", _OPTIONS))
    return replace(settings, funds=config.funds_control or bool(settings.balances))
