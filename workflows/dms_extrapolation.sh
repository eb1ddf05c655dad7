#!/bin/bash
# Issue 18, item 2: extrapolation on the nn4dms sets. Each split is trained with each candidate head of
# head.additive=auto on its own (none: the network alone; ridge: the additive ridge start; epistasis: the
# global-epistasis start); every run fits the ridge baseline on the same split. head.additive=auto would
# train the same three and keep the one best on tune/mse (dms_extrapolation_table.py makes that choice).
#   bash workflows/dms_extrapolation.sh [OUT] [DATA]     (~3 h on 2 cores; finished runs are skipped)
#   python workflows/dms_extrapolation_table.py OUT      (the table of the README)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-runs/dms_extrapolation}
D=${2:-../shared/data/dms/nn4dms}
mkdir -p "$W"
run() { # data split k head seed
  local name=$1 split=$2 k=$3 head=$4 seed=$5
  local out=$W/${name}_${split}${k}_${head}_s${seed}
  [ -f "$out/final_metrics.json" ] && return
  rm -rf "$out"
  protlc train-dms "$D/$name/$name.tsv" --out "$out" --split "$split" --split-seed "$seed" --seed "$seed" \
     --max-epochs 25 --set trainer.progress_bar=false --set split.mutational_k="${k:-1}" \
     --set head.additive="$head" > "$out.log" 2>&1
}
for seed in 0 1 2; do    # the seed of the training and of the split
  for head in none ridge epistasis; do
    run avgfp mutational 2 $head $seed   # train/tune <= 2 substitutions, test > 2
    run pab1 mutational 1 $head $seed    # singles -> doubles
  done
done
for seed in 0 1 2; do
  for head in none ridge epistasis; do
    run bgl3 positional "" $head $seed   # 20% of the mutated positions held out
    run pab1 positional "" $head $seed
    run avgfp positional "" $head $seed
  done
done
