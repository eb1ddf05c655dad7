"""The README's extrapolation table from the runs of ``workflows/dms_extrapolation.sh``.

    python workflows/dms_extrapolation_table.py RUNS_DIR [--json OUT.json]

Per data set and split: test Pearson / Spearman (mean ± std over seeds) of the default head, the additive
ridge start, the global-epistasis start, the one of them best on tune/mse (what ``head.additive=auto``
keeps, chosen per seed; a tie keeps the earlier head, as auto does), and the ridge baseline fitted on the
same split. A seed counts when all three heads finished.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def _cell(values: list[float]) -> str:
    return f"{np.mean(values):.3f}" + (f" ± {np.std(values):.3f}" if len(values) > 1 else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    runs: dict = {}
    for path in sorted(args.runs.glob("*/final_metrics.json")):
        name, split, head, seed = path.parent.name.rsplit("_", 3)
        runs.setdefault((name, split), {}).setdefault(int(seed[1:]), {})[head] = json.loads(path.read_text())
    heads = ("none", "ridge", "epistasis")
    print("| set | split (train / tune / test) | seeds | default head | additive ridge start | global epistasis "
          "| chosen on tune (picks) | ridge |")
    print("|---|---|---|---|---|---|---|---|")
    table = []
    for (name, split), seeds in runs.items():
        both = {s: h for s, h in seeds.items() if set(heads) <= set(h)}
        picks = [min(heads, key=lambda head: h[head]["tune/mse"]) for h in both.values()]  # min keeps the first of a tie
        row = {"set": name, "split": split, "seeds": sorted(both), "picks": picks}
        cells = []
        for label, pick in (("none", lambda h: h["none"]), ("ridge_start", lambda h: h["ridge"]),
                            ("epistasis", lambda h: h["epistasis"]),
                            ("chosen", lambda h: h[min(heads, key=lambda head: h[head]["tune/mse"])]),
                            ("ridge_baseline", lambda h: {k[len("ridge/"):]: v for k, v in h["none"].items()
                                                          if k.startswith("ridge/")})):
            picked = [pick(h) for h in both.values()]
            if not picked:
                cells.append("-")
                continue
            pearson, spearman = [m["test/pearson"] for m in picked], [m["test/spearman"] for m in picked]
            row[label] = {"test/pearson": pearson, "test/spearman": spearman}
            cells.append(f"{_cell(pearson)} / {_cell(spearman)}" + (f" ({', '.join(picks)})" if label == "chosen" else ""))
        first = next(iter(both.values()), None)
        sizes = "" if first is None else " ({split/train:,} / {split/tune:,} / {split/test:,})".format(**first["none"])
        print(f"| {name} | {split}{sizes} | {len(both)} | " + " | ".join(cells) + " |")
        table.append(row)
    if args.json:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from protlc.jsonio import write_json
        write_json(args.json, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
