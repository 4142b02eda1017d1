"""The part of AIP-160 filtering that listing supports: comparisons `field OP value`, joined by AND, with
alternatives joined by OR (which binds tighter than AND, as AIP-160 says), e.g.
`status = FAILED OR status = REJECTED AND rail = "mpesa"`. No parentheses, NOT or functions."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gpo_server.domain.states import BatchState, PaymentStatus


class InvalidFilter(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Comparison:
    field: str
    operator: str  # one of =, !=, <, <=, >, >=
    value: object  # typed by the field's parser: a status, a str, a bool, an aware datetime


# A filter: every group must hold (AND); a group holds when any of its comparisons does (OR).
Filter = tuple[tuple[Comparison, ...], ...]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    operators: frozenset[str]
    parse: Callable[[str], object]


EQUALITY = frozenset({"=", "!="})
ORDER = frozenset({"<", "<=", ">", ">="})

_TOKEN = re.compile(r'\s*(?:(?P<op>!=|<=|>=|=|<|>)|"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<word>[^\s=<>!"]+))')


def _enum_parser(enum: type[PaymentStatus] | type[BatchState], prefix: str) -> Callable[[str], object]:
    def parse(text: str) -> object:
        try:
            return enum(text.lower().removeprefix(prefix))
        except ValueError:
            raise InvalidFilter(f"unknown {enum.__name__} {text[:60]!r}") from None

    return parse


def _text(value: str) -> str:
    if not value or len(value) > 256:
        raise InvalidFilter("a text value must be 1 to 256 characters")
    return value


def _bool(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise InvalidFilter(f"expected true or false, not {value[:60]!r}")
    return value.lower() == "true"


def _time(value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidFilter(f"not an RFC 3339 time: {value[:60]!r}") from None
    if parsed.tzinfo is None:
        raise InvalidFilter(f"a time needs its offset (e.g. Z): {value[:60]!r}")
    return parsed.astimezone(dt.UTC)


PAYMENT_FIELDS: Mapping[str, FieldSpec] = {
    "status": FieldSpec(EQUALITY, _enum_parser(PaymentStatus, "payment_status_")),
    "rail": FieldSpec(EQUALITY, _text),
    "reference_id": FieldSpec(frozenset({"="}), _text),
    "attention": FieldSpec(frozenset({"="}), _bool),
    "update_time": FieldSpec(ORDER, _time),
}

BATCH_FIELDS: Mapping[str, FieldSpec] = {
    "state": FieldSpec(EQUALITY, _enum_parser(BatchState, "batch_state_")),
    "program": FieldSpec(EQUALITY, _text),
    "create_time": FieldSpec(ORDER, _time),
}


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs: kind is "op", "quoted" or "word"."""
    tokens, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise InvalidFilter(f"cannot read the filter at {text[position : position + 30]!r}")
        kind = match.lastgroup or "word"
        value = match.group(kind)
        if kind == "quoted":
            value = re.sub(r"\\(.)", r"\1", value)
        tokens.append((kind, value))
        position = match.end()
    return tokens


def parse_filter(text: str, fields: Mapping[str, FieldSpec]) -> Filter:
    """The filter `text` on `fields`; empty means no filter. InvalidFilter says what is wrong."""
    tokens = _tokens(text)
    groups: list[tuple[Comparison, ...]] = []
    group: list[Comparison] = []
    i = 0
    while i < len(tokens):
        if len(tokens) - i < 3:
            raise InvalidFilter("a term is field OPERATOR value")
        (name_kind, name), (op_kind, operator), (value_kind, value) = tokens[i : i + 3]
        if name_kind != "word" or op_kind != "op" or value_kind == "op":
            raise InvalidFilter(f"a term is field OPERATOR value, near {name[:40]!r}")
        spec = fields.get(name)
        if spec is None:
            raise InvalidFilter(f"cannot filter on {name[:60]!r}; fields: {', '.join(fields)}")
        if operator not in spec.operators:
            raise InvalidFilter(f"{name} takes {' or '.join(sorted(spec.operators))}, not {operator}")
        group.append(Comparison(name, operator, spec.parse(value)))
        i += 3
        if i < len(tokens):
            kind, joiner = tokens[i]
            if kind != "word" or joiner not in ("AND", "OR"):
                raise InvalidFilter(f"expected AND or OR, not {joiner[:40]!r}")
            if joiner == "AND":
                groups.append(tuple(group))
                group = []
            i += 1
            if i == len(tokens):
                raise InvalidFilter(f"the filter ends with {joiner}")
    if group:
        groups.append(tuple(group))
    return tuple(groups)


def equal_values(parsed: Filter, field: str) -> set[object] | None:
    """The values a filter pins `field` to, when one AND-term is made only of `field = value`; else None."""
    for group in parsed:
        if all(c.field == field and c.operator == "=" for c in group):
            return {c.value for c in group}
    return None


def parse_status_filter(text: str) -> frozenset[PaymentStatus]:
    """The statuses a status-only filter selects (empty: no filter); kept for older callers."""
    statuses: set[PaymentStatus] = set()
    groups = parse_filter(text, {"status": PAYMENT_FIELDS["status"]})
    for group in groups:
        if len(groups) > 1 or any(c.operator != "=" for c in group):
            raise InvalidFilter("use status = NAME [OR …]")
        statuses.update(PaymentStatus(str(c.value)) for c in group)
    return frozenset(statuses)
