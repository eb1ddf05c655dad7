"""Issue 18: does an extrapolating tune split (``split.tune_mode=extrapolate``) let ``head.additive: auto``
pick the head that extrapolates better? Each case trains ``protlc train-dms`` defaults (auto) on a full nn4dms
table with ``split.tune_mode=random`` and ``=extrapolate``, seed = training and split seed, and evaluates both
candidates on test (as :mod:`dms_auto_choice` does; the choice itself only saw the tune split).

    python workflows/dms_tune_mode.py OUT [--data ../shared/data/dms/nn4dms]
        [--cases pab1:positional,avgfp:mutational:2] [--seeds 0] [--max-epochs 15] [--threads 1]

Runs already finished in OUT are reused. Results: ``OUT/results.json`` and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import torch
from dms_auto_choice import REPO, run_one  # (puts the repository on sys.path)

from protlc.dms.splits import TUNE_MODES


def markdown(results: dict) -> str:
    lines = [("| set, split | seed | tune | train / tune / test | auto picks | auto test P / S | none | ridge-additive "
              "| ridge baseline | tune MSE none / ridge-add |"), "|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda pair: f"{pair[0]:.3f} / {pair[1]:.3f}"  # noqa: E731
    for r in results.values():
        lines.append(f"| {r['case']} | {r['seed']} | {r['tune_mode']} | {' / '.join(f'{n:,}' for n in r['sizes'])} | "
                     f"{r['chosen']} | **{fmt(r['auto'])}** | {fmt(r['none'])} | {fmt(r['ridge'])} | "
                     f"{fmt(r['ridge_baseline'])} | {r['none_tune']['tune/mse']:.3f} / {r['ridge_tune']['tune/mse']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "dms" / "nn4dms")
    parser.add_argument("--cases", default="pab1:positional", help="NAME:SPLIT[:K], comma-separated")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--max-epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    wild_types = pd.read_csv(args.data / "wt_sequences.tsv", sep="\t").set_index("dataset")
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    for case in args.cases.split(","):
        name, args.split, *k = case.split(":")
        wt, offset = wild_types.loc[name, "wt_aa"], int(wild_types.loc[name, "wt_offset"])
        for seed in (int(s) for s in args.seeds.split(",")):
            for mode in TUNE_MODES:
                key = f"{name}_{args.split}{''.join(k)}_tune_{mode}_s{seed}"
                if key in results:
                    continue
                run = args.out / key
                row = run_one(args.data / name / f"{name}.tsv", wt, offset, run, seed, args,
                              [f"split.seed={seed}", f"split.tune_mode={mode}",
                               *([f"split.mutational_k={k[0]}"] if k else [])])
                metrics = json.loads((run / "final_metrics.json").read_text())
                results[key] = {"case": case, "tune_mode": mode, "max_epochs": args.max_epochs, **row,
                                "sizes": [metrics[f"split/{p}"] for p in ("train", "tune", "test")]}
                args.out.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(results, indent=1) + "\n")
                print(markdown({key: results[key]}), flush=True)
    print(markdown(results))


if __name__ == "__main__":
    main()
