"""The noise table in the paper's layout: rows noise × metric × data, one column per method.

Pure formatting from numbers (no file reading): :func:`aggregate` turns per-seed values into
mean ± std, :func:`noise_table` builds the rows with the best of each row marked and the published
reference next to them, :func:`to_markdown` / :func:`to_csv` write them.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np

# docs/method.md §4: the published table (final model, %; DeepLoc membrane/soluble, fine-tuned protein language
# model). The ProSelfLC column is the AT variant (B = 12, τ = 0.5, T = 0.2).
PAPER_METHODS = ("CCE", "LS", "CP", "Boot-soft", "ProSelfLC")
PAPER_TABLE: dict[tuple[str, str, str], tuple[float, ...]] = {
    ("cropping", "accuracy", "test"): (88.7, 90.4, 90.9, 90.4, 92.4),
    ("cropping", "accuracy", "train"): (99.3, 99.3, 98.8, 95.9, 91.8),
    ("cropping", "1-H(p)/H(u)", "test"): (86.9, 59.5, 83.8, 89.0, 96.4),
    ("cropping", "1-H(p)/H(u)", "train"): (89.0, 63.3, 82.0, 92.6, 97.6),
    ("cropping", "max p", "test"): (96.4, 90.1, 95.5, 96.8, 99.2),
    ("cropping", "max p", "train"): (97.6, 92.2, 95.7, 98.5, 99.7),
    ("cropping + label", "accuracy", "test"): (84.2, 89.4, 89.4, 89.6, 92.2),
    ("cropping + label", "accuracy", "train"): (84.8, 75.2, 72.8, 77.2, 75.7),
    ("cropping + label", "1-H(p)/H(u)", "test"): (65.3, 38.7, 37.4, 57.6, 96.1),
    ("cropping + label", "1-H(p)/H(u)", "train"): (42.0, 20.0, 18.0, 31.3, 95.2),
    ("cropping + label", "max p", "test"): (88.9, 80.4, 78.4, 86.0, 99.2),
    ("cropping + label", "max p", "train"): (80.7, 70.0, 67.5, 74.9, 99.1),
}

# table metric label -> final_metrics.json key suffix; data rows in the paper's order
METRICS = {"accuracy": "accuracy", "1-H(p)/H(u)": "confidence_entropy", "max p": "max_p"}
DATA = ("test", "train")


def paper_value(noise: str, metric: str, data: str, method: str) -> float | None:
    """The published number for a cell, or None when the paper has no such row/column."""
    row = PAPER_TABLE.get((noise, metric, data))
    if row is None or method not in PAPER_METHODS:
        return None
    return row[PAPER_METHODS.index(method)]


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (ddof=1; NaN for one value) of ``n`` per-seed values."""

    mean: float
    std: float
    n: int

    def format(self, digits: int = 1) -> str:
        """``"88.7 ± 1.2"``; one seed: ``"88.7"``; no value: ``"—"``."""
        if self.n == 0 or math.isnan(self.mean):
            return "—"
        if self.n == 1 or math.isnan(self.std):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def aggregate(values) -> Stat:
    """Stat of the finite values in ``values`` (a sequence of floats)."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if v.size == 0:
        return Stat(float("nan"), float("nan"), 0)
    return Stat(float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else float("nan"), int(v.size))


def best_of(stats: dict[str, Stat], digits: int = 1, lower_is_better: bool = False) -> list[str]:
    """The methods with the best mean as shown (ties at ``digits`` decimals all count)."""
    shown = {m: round(s.mean, digits) for m, s in stats.items() if s.n and not math.isnan(s.mean)}
    if not shown:
        return []
    target = min(shown.values()) if lower_is_better else max(shown.values())
    return [m for m, v in shown.items() if v == target]


@dataclass
class Row:
    """One table row: the key, per-method stats (in %), the best methods and the paper's numbers."""

    noise: str
    metric: str
    data: str
    stats: dict[str, Stat]
    best: list[str] = field(default_factory=list)

    def paper(self, method: str) -> float | None:
        return paper_value(self.noise, self.metric, self.data, method)

    def diff(self, method: str) -> float | None:
        ref, stat = self.paper(method), self.stats[method]
        return None if ref is None or stat.n == 0 else stat.mean - ref


def noise_table(values: dict[tuple[str, str, str, str], list[float]], noises: list[str], methods: list[str],
                metrics: dict[str, str] | None = None, lower_is_better: bool = False) -> list[Row]:
    """Rows in the paper's order from per-seed values in %.

    Args:
        values: ``(noise, metric, data, method) -> [value per seed]`` (missing keys: no value).
        noises, methods: row blocks and columns, in order.
        metrics: the metric labels of the rows (default: the paper's three).
    """
    rows = []
    for noise in noises:
        for metric in (metrics or METRICS):
            for data in DATA:
                stats = {m: aggregate(values.get((noise, metric, data, m), [])) for m in methods}
                rows.append(Row(noise, metric, data, stats, best_of(stats, lower_is_better=lower_is_better)))
    return rows


def _num(x: float | None, digits: int = 1, sign: bool = False) -> str:
    if x is None or math.isnan(x):
        return "—"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def to_markdown(rows: list[Row], methods: list[str], kind: str = "ours") -> str:
    """One markdown table. ``kind``: ``ours`` (mean ± std, best in bold), ``paper`` (the published
    numbers, best in bold) or ``diff`` (ours − paper, percentage points)."""
    head = "| noise | metric | data | " + " | ".join(methods) + " |\n"
    head += "|---|---|---|" + "---|" * len(methods) + "\n"
    lines = []
    for r in rows:
        if kind == "ours":
            cells = [f"**{r.stats[m].format()}**" if m in r.best else r.stats[m].format() for m in methods]
        elif kind == "paper":
            refs = {m: r.paper(m) for m in methods}
            finite = [v for v in refs.values() if v is not None]
            top = max(finite) if finite else None
            cells = [f"**{_num(v)}**" if v is not None and v == top else _num(v) for v in refs.values()]
        elif kind == "diff":
            cells = [_num(r.diff(m), sign=True) for m in methods]
        else:
            raise ValueError(f"unknown table kind {kind!r}")
        lines.append(f"| {r.noise} | {r.metric} | {r.data} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def to_csv(rows: list[Row], methods: list[str]) -> str:
    """The table as CSV: the paper's layout (``noise, metric, data``, one ``mean ± std`` column per method,
    ``best``), then per method ``<m> mean``, ``<m> std``, ``<m> n``, ``<m> paper``, ``<m> diff``."""
    import csv

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    numeric = [f"{m} {k}" for m in methods for k in ("mean", "std", "n", "paper", "diff")]
    writer.writerow(["noise", "metric", "data", *methods, "best", *numeric])
    for r in rows:
        extra = []
        for m in methods:
            s = r.stats[m]
            extra += [_raw(s.mean), _raw(s.std), s.n, _raw(r.paper(m)), _raw(r.diff(m))]
        writer.writerow([r.noise, r.metric, r.data, *(r.stats[m].format() for m in methods), ";".join(r.best), *extra])
    return buf.getvalue()


def _raw(x: float | None) -> str:
    return "" if x is None or math.isnan(x) else f"{x:.4f}"
