"""Downloads of exactly what the dashboard shows: `selectors.export_document` as CSV."""

import csv
import io

from surveys import catalog

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str) -> str:
    # Unit names are typed by organizers; a spreadsheet must not run one as a formula.
    return f"'{value}" if value.startswith(_FORMULA_START) else value


def _count(value: int | None) -> str:
    return "" if value is None else str(value)


def export_csv(document: dict) -> str:
    """One row per released figure: cells, unit totals and the all-units timeline.

    A hidden figure is an empty value (with `suppressed` true for report counts). Released
    comment sets follow as `comment` rows.
    """
    header = ["scope", "unit", "period", "reports", "suppressed"]
    header += [f"signal:{code}" for code in catalog.SIGNAL_CODES]
    header += [f"outcome:{code}" for code in catalog.OUTCOME_CODES]
    header += ["comment"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)

    def parts(row: dict) -> list[str]:
        signals, outcomes = row.get("signals", {}), row.get("outcomes", {})
        return ([_count(signals.get(code)) for code in catalog.SIGNAL_CODES]
                + [_count(outcomes.get(code)) for code in catalog.OUTCOME_CODES])

    for cell in document["cells"]:
        writer.writerow(["cell", _text(cell["unit"]), cell["period"], _count(cell["reports"]),
                         str(cell["suppressed"]).lower(), *parts(cell)])
    for total in document["units"]:
        writer.writerow(["unit total", _text(total["unit"]), "", _count(total["reports"]),
                         str(total["suppressed"]).lower(), *parts(total)])
    for bar in document["timeline"]:
        writer.writerow(["all units", "", bar["period"], _count(bar["reports"]),
                         str(bar["reports"] is None).lower(), *parts({})])
    # A comment row carries its set's unit and period only, in the set's released order.
    blank = [""] * (len(header) - 6)
    for item in document.get("comments", []):
        for comment in item["comments"]:
            writer.writerow(["comment", _text(item["unit"]), item["period"] or "", "", "",
                             *blank, _text(comment)])
    return out.getvalue()
