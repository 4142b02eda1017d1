"""Routing a payee financial address to a rail: first matching rule wins, else the default rail."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpo_server.domain.routing import Router, Rule


def test_first_matching_rule_wins() -> None:
    router = Router(
        (Rule("mobile:2547*@mpesa", "mpesa_ke"), Rule("mobile:*@mpesa", "mpesa"), Rule("*", "catch_all")),
        default_rail="bank_a",
    )
    assert router.rail_for("mobile:254712345678@mpesa") == "mpesa_ke"
    assert router.rail_for("mobile:255712345678@mpesa") == "mpesa"
    assert router.rail_for("account:1@bank-b") == "catch_all"


def test_order_of_rules_decides_not_specificity() -> None:
    broad_first = Router((Rule("mobile:*", "broad"), Rule("mobile:*@mpesa", "narrow")), None)
    assert broad_first.rail_for("mobile:1@mpesa") == "broad"
    narrow_first = Router((Rule("mobile:*@mpesa", "narrow"), Rule("mobile:*", "broad")), None)
    assert narrow_first.rail_for("mobile:1@mpesa") == "narrow"


def test_default_rail_when_nothing_matches() -> None:
    router = Router((Rule("mobile:*@mpesa", "mpesa"),), default_rail="bank_a")
    assert router.rail_for("account:12345@abcd0000001.ifsc.pymt-rail") == "bank_a"


def test_none_when_nothing_matches_and_no_default() -> None:
    router = Router((Rule("mobile:*@mpesa", "mpesa"),), default_rail=None)
    assert router.rail_for("account:12345@bank-a") is None
    assert Router((), None).rail_for("mobile:1@mpesa") is None


def test_no_rules_means_default_for_everything() -> None:
    router = Router((), "bank_a")
    assert router.rail_for("mobile:1@mpesa") == "bank_a"
    assert router.rail_for("") == "bank_a"


@pytest.mark.parametrize(
    "fa",
    [
        "mobile:1@mpesa-extra",  # the pattern covers the whole address, not a prefix
        "xmobile:1@mpesa",
        "MOBILE:1@mpesa",  # matching is case-sensitive on every platform
        "mobile:1@MPESA",
        "mobile:1@mpesa\n",
    ],
)
def test_pattern_matches_the_whole_address_case_sensitively(fa: str) -> None:
    router = Router((Rule("mobile:*@mpesa", "mpesa"),), default_rail=None)
    assert router.rail_for(fa) is None


def test_shell_pattern_features() -> None:
    router = Router((Rule("mobile:+2547????????@mpesa", "ke"), Rule("account:*@bank-[ab]", "ab")), None)
    assert router.rail_for("mobile:+254712345678@mpesa") == "ke"
    assert router.rail_for("mobile:+25471234567@mpesa") is None
    assert router.rail_for("account:9@bank-a") == "ab"
    assert router.rail_for("account:9@bank-b") == "ab"
    assert router.rail_for("account:9@bank-c") is None


# --- Router.parse -------------------------------------------------------------------------------------


def test_parse_rules() -> None:
    router = Router.parse("mobile:*@mpesa=mpesa, account:*@bank-a=bank_a", default_rail=None)
    assert tuple(router.rules) == (Rule("mobile:*@mpesa", "mpesa"), Rule("account:*@bank-a", "bank_a"))
    assert router.default_rail is None
    assert router.rail_for("mobile:254712345678@mpesa") == "mpesa"
    assert router.rail_for("account:12345@bank-a") == "bank_a"
    assert router.rail_for("account:12345@bank-b") is None


def test_parse_keeps_the_default_rail() -> None:
    router = Router.parse("mobile:*@mpesa=mpesa", default_rail="bank_a")
    assert router.default_rail == "bank_a"
    assert router.rail_for("account:12345@bank-b") == "bank_a"


def test_parse_trims_whitespace_and_skips_empty_items() -> None:
    router = Router.parse("  mobile:*@mpesa = mpesa ,, ,account:*@bank-a=bank_a,", default_rail=None)
    assert tuple(router.rules) == (Rule("mobile:*@mpesa", "mpesa"), Rule("account:*@bank-a", "bank_a"))


@pytest.mark.parametrize("text", ["", "   ", ",", " , ,"])
def test_parse_empty_text_gives_no_rules(text: str) -> None:
    router = Router.parse(text, default_rail="bank_a")
    assert tuple(router.rules) == ()
    assert router.rail_for("mobile:1@mpesa") == "bank_a"


@pytest.mark.parametrize(
    "text",
    [
        "mpesa",
        "mobile:*@mpesa",
        "=mpesa",
        " = mpesa",
        "mobile:*@mpesa=",
        "mobile:*@mpesa=  ",
        "=",
        "mobile:*@mpesa=mpesa, account:*@bank-a",
        "mobile:*@mpesa=mpesa, =bank_a",
    ],
)
def test_parse_malformed_rules_raise(text: str) -> None:
    with pytest.raises(ValueError, match="pattern=rail"):
        Router.parse(text, default_rail=None)


def test_parsed_router_preserves_rule_order() -> None:
    router = Router.parse("mobile:*@mpesa=first, mobile:*=second", default_rail=None)
    assert router.rail_for("mobile:1@mpesa") == "first"
    assert router.rail_for("mobile:1@airtel") == "second"


def test_router_is_immutable() -> None:
    router = Router.parse("mobile:*@mpesa=mpesa", default_rail=None)
    with pytest.raises(AttributeError):
        router.default_rail = "other"  # type: ignore[misc]


_name = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)


@given(st.lists(st.tuples(_name, _name), min_size=1, max_size=8), st.one_of(st.none(), _name))
def test_parse_round_trips_generated_rules(pairs: list[tuple[str, str]], default: str | None) -> None:
    rules = [Rule(f"{scheme}:*@{provider}", f"rail_{provider}") for scheme, provider in pairs]
    text = ", ".join(f"{rule.pattern}={rule.rail}" for rule in rules)
    router = Router.parse(text, default_rail=default)
    assert tuple(router.rules) == tuple(rules)
    scheme, provider = pairs[0]
    # The first rule that matches wins, even when a later rule matches too.
    assert router.rail_for(f"{scheme}:123@{provider}") == f"rail_{provider}"
    assert router.rail_for("no-colon-no-at") == default
