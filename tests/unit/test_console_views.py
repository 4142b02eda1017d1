"""The console's page values (gpo_server/console/views.py): masked addresses, exact amounts, progress,
rates in integer arithmetic, links that stay inside the console, and filter literals."""

from __future__ import annotations

from gpo.v1 import resources_pb2 as res_pb

from gpo_server.console import views


def test_a_payment_shows_masked_addresses_and_its_exact_amount() -> None:
    payment = res_pb.Payment(
        name="batches/b1/payments/r 1",
        reference_id="r 1",
        payee_fa="account:123456789012@bank-a",
        payer_fa="account:treasury-000123@central-bank",
        amount="2500.10",
        currency_code="KES",
        status=res_pb.PAYMENT_STATUS_FAILED,
        reason_code="rjct.account.invalid",
        reason_message="<b>no such account</b>",
    )
    view = views.payment_view(payment)
    assert view.payee == "account:***9012@bank-a" and "123456789012" not in repr(view)
    assert view.payer == "account:***0123@central-bank"
    assert (view.amount, view.status, view.batch_uid) == ("2500.10", "FAILED", "b1")
    assert view.reason_message == "<b>no such account</b>"  # escaped by the templates, not altered here


def test_a_batch_counts_final_payments_as_progress() -> None:
    batch = res_pb.Batch(
        name="batches/b1",
        state=res_pb.BATCH_STATE_PROCESSING,
        payment_count=3,
        totals=[
            res_pb.PaymentTotal(
                status=res_pb.PAYMENT_STATUS_SUCCEEDED, currency_code="KES", count=1, amount="0.10"
            ),
            res_pb.PaymentTotal(
                status=res_pb.PAYMENT_STATUS_FAILED, currency_code="USD", count=1, amount="0.20"
            ),
            res_pb.PaymentTotal(
                status=res_pb.PAYMENT_STATUS_QUEUED, currency_code="KES", count=1, amount="0.30"
            ),
        ],
    )
    view = views.batch_view(batch)
    assert (view.done, view.percent, view.final) == (2, 66, False)
    assert [(a.status, a.amount) for a in view.amounts] == [
        ("QUEUED", "0.30"),
        ("SUCCEEDED", "0.10"),
        ("FAILED", "0.20"),
    ]
    assert views.progress_json(view)["counts"] == {"QUEUED": 1, "SUCCEEDED": 1, "FAILED": 1}


def test_rail_rates_per_minute_and_error_rate() -> None:
    stats = res_pb.RailStats(rail="mpesa", succeeded_count=290, failed_count=10)
    view = views.rail_view(stats, 300)
    assert (view.per_minute, view.error_rate) == ("60.0", "3.3%")
    assert views.rail_view(res_pb.RailStats(rail="idle", waiting_count=4), 300).error_rate == "-"


def test_links_back_stay_inside_the_console_and_filter_strings_are_quoted() -> None:
    assert views.safe_back("/attention") == "/attention"
    assert (
        views.safe_back("/payment?name=batches%2Fb1%2Fpayments%2Fr-1")
        == "/payment?name=batches%2Fb1%2Fpayments%2Fr-1"
    )
    elsewhere = (
        "javascript:alert(1)",
        "//evil.example/",
        "/\\evil.example",
        "https://evil.example/",
        "/\t/evil.example",
    )
    for outside in elsewhere:
        assert views.safe_back(outside) == "/batches"
    assert views.quoted('a"b\\c') == '"a\\"b\\\\c"'


def test_a_batch_awaiting_approval_is_not_final_and_shows_its_approvals() -> None:
    batch = res_pb.Batch(
        name="batches/b2",
        state=res_pb.BATCH_STATE_AWAITING_APPROVAL,
        payment_count=2,
        required_approvals=2,
        approvals=[res_pb.BatchApproval(approver="alice", decision=res_pb.APPROVAL_DECISION_APPROVED)],
    )
    view = views.batch_view(batch)
    assert view.state == "AWAITING_APPROVAL" and not view.final
    assert [(a.approver, a.decision) for a in view.approvals] == [("alice", "APPROVED")]
    assert "AWAITING_APPROVAL" in views.BATCH_STATES
    assert views.outcome_view(batch).summary == "The batch is now AWAITING_APPROVAL (1 of 2 approvals)."
