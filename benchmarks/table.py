"""Render the newest figures of ``benchmarks/results.jsonl`` as the tables of ``benchmarks/README.md``.

    python benchmarks/table.py          # rewrite the part of README.md between the table markers

For each benchmark the newest record of each case (preset and mode, library size, families and
method, ...) is shown, with its absolute value and its ratio against the baseline run in the same
script. GPU figures not in the results file are shown as not measured.
"""

from __future__ import annotations

import json
import platform
import sys
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protlc.atomic import atomic_write_text  # noqa: E402
from results import RESULTS  # noqa: E402

README = RESULTS.parent / "README.md"
START, END = "<!-- table:start (benchmarks/table.py) -->", "<!-- table:end -->"
NOT_MEASURED = "not measured (no GPU lent this session)"


def newest(records: list[dict], benchmark: str, *keys: str) -> list[dict]:
    """The last record of each distinct ``keys`` tuple of one benchmark, in first-seen order."""
    latest: dict[tuple, dict] = {}
    for r in records:
        if r.get("benchmark") == benchmark:
            latest[tuple(r.get(k) for k in keys)] = r
    return list(latest.values())


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def train_section(records: list[dict]) -> str:
    rows = []
    for r in newest(records, "train", "preset", "mode"):
        rows.append([r["preset"], r["mode"], f"{r['residues_per_second']:,.0f}", f"{r['sequences_per_second']:.1f}",
                     f"{r['seconds_per_step']:.3f}", f"{1e3 * r['load_seconds_per_step']:.1f}",
                     pct(r["padding_fraction"]),
                     pct(r["epoch_padding_naive" if r["mode"] == "naive" else "epoch_padding_bucketed"]),
                     f"{r['peak_rss_mb']:,.0f}", f"{r.get('speedup_vs_naive', '-')}x",
                     f"{r['steps']} x {r['batch_size']}", r["date"]])
    return table(["preset", "batching", "residues/s", "seq/s", "s/step", "loader ms/step", "padding (timed steps)",
                  "padding (epoch)", "peak RSS MB", "vs naive", "steps x batch", "date"], rows)


def _method(r: dict) -> str:
    """The method, with the split of its test set when that is not the per-family random split."""
    split = r.get("split", "random")
    return r["method"] if split == "random" else f"{r['method']} ({split} split)"


def hmmer_section(records: list[dict]) -> str:
    latest = newest(records, "hmmer", "split", "families", "method", "extrapolated")
    measured = [r for r in latest if not r.get("extrapolated")]
    baseline = {(r.get("split"), r["families"]): r["sequences_per_second"] for r in measured if r["method"] == "phmmer"}
    rows = []
    for r in measured:
        base = baseline.get((r.get("split"), r["families"]))
        what = r.get("database") or r.get("profiles") or r.get("head_classes")
        rows.append([r["families"], _method(r), pct(r.get("accuracy")), f"{r['sequences_per_second']:,.1f}",
                     f"{r['sequences_per_second'] / base:.2f}x" if base else "-", f"{r.get('residues_per_second', 0):,}",
                     r["queries"], what, r["date"]])
    for r in latest:
        if r.get("extrapolated"):
            rows.append([f"{r['families']:,} (extrapolated)", _method(r), "-", f"{r['sequences_per_second']:.3f}",
                         "-", "-", "-", r["fit"], r["date"]])
    growth = []
    measured = [r for r in measured if r.get("split", "random") == "random"]  # the cost growth: the random split's runs
    for method in dict.fromkeys(r["method"] for r in measured if r.get("residues_per_second")):
        cost = {r["families"]: 1 / r["residues_per_second"] for r in measured
                if r["method"] == method and r.get("residues_per_second")}
        low, high = min(cost), max(f for f in cost if f <= 107)
        if high > low:
            growth.append([method, f"{low} -> {high}", f"{cost[high] / cost[low]:.2f}x"])
    return (table(["families", "method", "accuracy", "seq/s", "vs phmmer", "residues/s", "queries",
                   "db seqs / profiles / head", "date"], rows)
            + "\n\nCost per query residue, growth with the number of families (target for protlc: < 1.3x "
            "from 10 to 107):\n\n" + table(["method", "families", "cost growth"], growth))


def score_section(records: list[dict]) -> str:
    rows, base = [], None
    for r in newest(records, "score", "variants", "device"):
        base = base or r
        rows.append([f"{r['variants']:,}", r["device"], f"{r['variants_per_second']:,}",
                     f"{r['variants_per_second'] / base['variants_per_second']:.2f}x", f"{r['peak_rss_mb']:,.0f}",
                     f"{r['peak_rss_mb'] / base['peak_rss_mb']:.2f}x", r["date"]])
    measured = any(r.get("part") == "score" for r in gpu_records(records))
    rows.append(["10^4-10^6", "cuda", "10^6: see GPU below" if measured else NOT_MEASURED, "", "", "", ""])
    return table(["variants", "device", "variants/s", "vs smallest", "peak RSS MB", "vs smallest", "date"], rows)


def prepare_section(records: list[dict]) -> str:
    rows = [[r["input"], f"{r['sequences']:,}", r["baseline"], r["bare_parse_s"], r["prepare_s"], f"{r['ratio']}x",
             f"{r['prepare_seq_per_s']:,}", r["date"]] for r in newest(records, "prepare", "input")]
    return table(["input", "sequences", "baseline", "baseline s", "prepare s", "prepare / baseline", "prepare seq/s",
                  "date"], rows)


def profile_section(records: list[dict]) -> str:
    out = []
    for r in newest(records, "profile", "path"):
        if r["path"] == "score-masking-ab":
            out.append(f"* scoring {r['variants']:,} variants, masking every batch (before) vs skipping the mask of "
                       f"batches without padding (after): {r['masked_every_batch']} s vs "
                       f"{r['skip_masking_without_padding']} s, **{r['speedup']}x** ({r['date']})")
        else:
            top = ", ".join(f"{e['name']} {pct(e['share'])}" for e in r["top"][:6])
            out.append(f"* {r['path']} ({r['date']}): {top}")
    return "\n".join(out)


def machine_line(records: list[dict]) -> str:
    local = [r for r in records if r.get("benchmark") != "gpu" or r.get("quick")]
    last = local[-1] if local else {}
    try:
        ram = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")) / 2**20
    except (OSError, StopIteration):
        ram = float("nan")
    loads = [r["load_average_1min"] for r in records if r.get("date") == last.get("date") and r.get("load_average_1min") is not None and r in local]
    load = f", 1-min load average {min(loads)}-{max(loads)} during that day's runs" if loads else ""
    return (f"{last.get('machine', platform.node())}, {ram:.0f} GiB RAM, torch {metadata.version('torch')}, "
            f"pyhmmer {_version('pyhmmer')}, commit {last.get('git_commit', '?')}{load}")


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def gpu_records(records: list[dict]) -> list[dict]:
    """The records of the newest day's ``bench_gpu.py`` runs on one GPU (a lease is short: every figure of
    that day counts), in the order they were measured."""
    runs = [r for r in records if r.get("benchmark") == "gpu" and not r.get("quick") and r.get("gpu")]
    if not runs:
        return []
    last = runs[-1]
    return [r for r in runs if all(r.get(k) == last.get(k) for k in ("date", "gpu"))]


def gpu_section(records: list[dict]) -> str:
    run = gpu_records(records)
    if not run:
        return table(["figure", "value"], [
            ["paper and small presets, bf16, training residues/s and MFU (eager / torch.compile)", NOT_MEASURED],
            ["one protlc train epoch (paper, bf16) and its time breakdown", NOT_MEASURED],
            ["predict sequences/s (target 20,000)", NOT_MEASURED], ["score variants/s (10^6 Pab1 variants)", NOT_MEASURED]])
    first = run[0]
    commits = ", ".join(dict.fromkeys(r["git_commit"] for r in run))
    seconds = next((r["bench_seconds"] for r in run if r.get("bench_seconds")), "?")
    head = (f"{first['gpu']}, torch {first['torch']} (CUDA {first.get('cuda')}), commits {commits}, "
            f"{first['date']}; the whole script {seconds} s (`benchmarks/bench_gpu.py`); rows with a note come "
            "from a second, shorter probe of the training step in the same lease.")
    rows = []
    for r in run:
        part = r["part"]
        if part == "matmul":
            sheet = f" (datasheet {r['datasheet_tflops']:.0f})" if r.get("datasheet_tflops") else ""
            rows.append([f"bf16 matmul peak, n = {', '.join(str(s['n']) for s in r['sizes'])}",
                         f"{r['tflops']:,.0f} TFLOP/s{sheet}"])
        elif part == "step":
            note = f" ({r['note']}, {r['git_commit']})" if r.get("note") else ""
            rows.append([f"training step, {r['preset']}, {r['mode']}, {r['tokens_per_batch']:,} tokens/batch{note}",
                         f"{r['residues_per_second']:,.0f} residues/s, {r['sequences_per_second']:,.0f} seq/s, "
                         f"{1e3 * r['seconds_per_step']:.1f} ms/step; MFU {pct(r.get('mfu'))} of the matmul peak "
                         f"({pct(r.get('mfu_padded'))} counting padding, {pct(r['padding_fraction'])}); "
                         f"{pct(r.get('mfu_datasheet'))} of the datasheet; {r['recompiled_while_timed']} recompiles "
                         f"timed; peak memory {r.get('peak_memory_gib') or 0:.1f} GiB"])
        elif part == "train":
            parts = ", ".join(f"{k.split('/')[1].replace('_', ' ')} {r[k]:.1f} s" for k in (
                "time/startup", "time/training", "time/validation", "time/dynamics", "time/final_evaluation",
                "time/plots") if k in r)
            rows.append([f"protlc train, 1 epoch, {r['preset']}, {r['precision']}, {r['train_sequences']:,} sequences, "
                         f"{r.get('optimizer_steps', '?')} steps",
                         f"{r['wall_seconds']:.0f} s wall ({parts}); peak memory {r.get('gpu/peak_memory_gib', 0):.1f} GiB"])
        elif part == "predict":
            rows.append([f"protlc predict, {r['sequences']:,} sequences end to end (target 50,000 seq/s)",
                         f"{r['sequences_per_second']:,.0f} seq/s ({r['wall_seconds']:.1f} s)"])
        elif part == "score":
            rows.append([f"protlc score, {r['variants']:,} Pab1 variants end to end",
                         f"{r['variants_per_second']:,.0f} variants/s ({r['wall_seconds']:.1f} s)"])
    return head + "\n\n" + table(["figure", "value"], rows)


def render(records: list[dict]) -> str:
    gpu = gpu_section(records)
    return "\n\n".join([
        START, f"Machine of the newest records: {machine_line(records)}.",
        "### Training throughput (CPU, fp32)", train_section(records),
        "### Classification against HMMER (CPU)", hmmer_section(records),
        "### Fitness scoring", score_section(records),
        "### GPU", gpu,
        "### Profiles (share of CPU time)", profile_section(records),
        "### prepare", prepare_section(records), END])


def main() -> int:
    records = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    text = README.read_text() if README.is_file() else f"# Benchmarks\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    atomic_write_text(README, head + render(records) + tail)
    print(f"wrote the tables of {README.relative_to(RESULTS.parents[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
