"""Routing: which rail pays a payee financial address. First matching rule wins, else the default rail."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

MAX_RAIL = 64  # rail names appear in every payment, queue name and dead letter (rail.proto bounds them)


@dataclass(frozen=True, slots=True)
class Rule:
    """`pattern` is a shell-style pattern on the whole address, e.g. "mobile:*@mpesa"."""

    pattern: str
    rail: str


@dataclass(frozen=True, slots=True)
class Router:
    rules: Sequence[Rule]
    default_rail: str | None

    def rail_for(self, payee_fa: str) -> str | None:
        """The rail for this address, or None when no rule matches and there is no default rail."""
        for rule in self.rules:
            if fnmatchcase(payee_fa, rule.pattern):
                return rule.rail
        return self.default_rail

    @classmethod
    def parse(cls, text: str, default_rail: str | None) -> Router:
        """Reads rules written as "pattern=rail,pattern=rail" (the GPO_ROUTES setting)."""
        rules = []
        for item in filter(None, (part.strip() for part in text.split(","))):
            pattern, sep, rail = item.rpartition("=")
            if not sep or not pattern or not rail:
                raise ValueError(f"route {item!r} is not pattern=rail")
            rules.append(Rule(pattern.strip(), rail.strip()))
        for name in [r.rail for r in rules] + ([default_rail] if default_rail else []):
            if len(name) > MAX_RAIL:
                raise ValueError(f"rail name {name[:MAX_RAIL]!r}... is longer than {MAX_RAIL} characters")
        return cls(tuple(rules), default_rail)
