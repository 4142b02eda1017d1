"""A batch's or a program cycle's reconciliation as CSV (`gpo reconciliation BATCH|CYCLE --csv`): one row
per currency paid, stating what was declared, paid, confirmed on a bank statement and reversed. A cycle's
rows are the same figures over the cycle's batches; its first column is named "cycle" instead of "batch"."""

from __future__ import annotations

import csv
import io

from gpo.v1 import resources_pb2 as res_pb

COLUMNS = (
    "batch",
    "currency_code",
    "declared_count",
    "declared_total_amount",
    "paid_count",
    "paid_amount",
    "confirmed_count",
    "confirmed_amount",
    "reversed_count",
    "reversed_amount",
    "unconfirmed_count",
    "unmatched_entries",
)


def reconciliation_csv(view: res_pb.BatchReconciliation | res_pb.CycleReconciliation) -> str:
    """The CSV text. The declared figures are the batch header's (a cycle's: its batches' headers summed),
    over all currencies, on every row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("cycle", *COLUMNS[1:]) if isinstance(view, res_pb.CycleReconciliation) else COLUMNS)
    batch = view.name.removesuffix("/reconciliation")
    common = (view.declared_count, view.declared_total_amount)
    tail = (view.unconfirmed_count, len(view.unmatched_entries))
    totals = list(view.totals) or [
        res_pb.ReconciliationTotal(paid_amount="0.00", confirmed_amount="0.00", reversed_amount="0.00")
    ]
    for t in totals:
        writer.writerow(
            (
                batch,
                t.currency_code,
                *common,
                t.paid_count,
                t.paid_amount,
                t.confirmed_count,
                t.confirmed_amount,
                t.reversed_count,
                t.reversed_amount,
                *tail,
            )
        )
    return out.getvalue()
