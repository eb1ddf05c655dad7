"""The paper's claims behind the noise table (docs/method.md §4), checked mechanically on a table's rows.

1. Under noise, ProSelfLC has the best test accuracy.
2. Its confidence (1-H(p)/H(u) and max p, test and train) is higher than every other method's.
3. Label smoothing and confidence penalty lower confidence (below CCE).
4. Its train accuracy against the noisy labels is low (below CCE's): it does not fit wrong labels.

Each check reports the numbers, ``holds`` or ``does not hold``, and flags a margin smaller than the
seed spread. Works on the five paper columns; other column sets get no claims.
"""

from __future__ import annotations

from protlc.reproduce.table import Row

OURS, BASE, LOWERERS = "ProSelfLC", "CCE", ("LS", "CP")
CONFIDENCE = ("1-H(p)/H(u)", "max p")


def _verdict(ok: bool, margin: float, spread: float) -> str:
    text = "holds" if ok else "does not hold"
    if spread == spread and abs(margin) < spread:  # spread is NaN for one seed
        text = (f"{'holds only on the means' if ok else text} "
                f"(margin {abs(margin):.1f} pp < seed std {spread:.1f})")
    return text


def _versus(row: Row, method: str, others: list[str], higher: bool) -> tuple[bool, str]:
    """Is ``method`` above (``higher``) or below every method in ``others`` in ``row``?"""
    me = row.stats[method]
    rivals = {m: row.stats[m] for m in others if row.stats[m].n}
    if not me.n or not rivals:
        return False, f"{row.metric} {row.data}: no values"
    rival = (max if higher else min)(rivals, key=lambda m: rivals[m].mean)
    margin = me.mean - rivals[rival].mean
    ok = margin > 0 if higher else margin < 0
    spread = max((s for s in (me.std, rivals[rival].std) if s == s), default=float("nan"))
    return ok, (f"{row.metric} {row.data}: {method} {me.format()} vs {rival} {rivals[rival].format()} — "
                f"{_verdict(ok, margin, spread)}")


def check_claims(rows: list[Row], methods: list[str]) -> list[tuple[str, bool, list[str]]]:
    """``[(claim, holds everywhere, [one line per checked row])]``; empty without the five paper methods."""
    if not {OURS, BASE, *LOWERERS} <= set(methods):
        return []
    others = [m for m in methods if m != OURS]
    results = []
    for noise in dict.fromkeys(r.noise for r in rows):
        block = {(r.metric, r.data): r for r in rows if r.noise == noise}
        checks = [
            (f"{noise}: {OURS} has the best test accuracy", [_versus(block["accuracy", "test"], OURS, others, True)]),
            (f"{noise}: {OURS}'s confidence is higher than every other method's",
             [_versus(block[m, d], OURS, others, True) for m in CONFIDENCE for d in ("test", "train")]),
            (f"{noise}: LS and CP lower confidence below CCE",
             [_versus(block[m, "test"], x, [BASE], False) for x in LOWERERS for m in CONFIDENCE]),
            (f"{noise}: {OURS}'s train accuracy (observed labels) is below CCE's",
             [_versus(block["accuracy", "train"], OURS, [BASE], False)]),
        ]
        for claim, outcomes in checks:
            results.append((claim, all(ok for ok, _ in outcomes), [line for _, line in outcomes]))
    return results


def claims_markdown(rows: list[Row], methods: list[str]) -> str:
    """The checks as a markdown list (empty string when the columns are not the paper's)."""
    lines = []
    for claim, ok, details in check_claims(rows, methods):
        weak = ok and any("holds only on the means" in d for d in details)
        verdict = "holds only within the seed spread" if weak else "holds" if ok else "does not hold"
        lines.append(f"- **{claim}: {verdict}**")
        lines += [f"  - {d}" for d in details]
    return "\n".join(lines) + ("\n" if lines else "")
