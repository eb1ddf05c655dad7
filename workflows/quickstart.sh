#!/usr/bin/env bash
# The README's main job on the embedded default data (16 real Pfam families, 2,048 domains; no network):
# prepare with 40% symmetric label noise, train the `small` ProtCNN with CCE and with ProSelfLC-AT,
# print both runs' FINAL metrics side by side, predict the test split, and audit the training labels.
#   bash workflows/quickstart.sh [OUT_DIR]        (default runs/quickstart; replaced on each run)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/quickstart}
EPOCHS=${EPOCHS:-12}
rm -rf "$OUT"
protlc prepare data/exthomfam_16x128.tsv --out "$OUT/data" --label-noise 0.4 --seed 0
for loss in cce proselflc_at; do
  protlc train "$OUT/data" --out "$OUT/$loss" --config configs/small_cpu.yaml --loss "$loss" \
    --max-epochs "$EPOCHS" --batch-size 32 --seed 0 --set dynamics.every_n_steps=20
done
python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
runs = {loss: json.load(open(f"{out}/{loss}/final_metrics.json")) for loss in ("cce", "proselflc_at")}
keys = ["train/accuracy", "train/accuracy_clean_labels", "test/accuracy", "test/confidence_entropy", "test/max_p", "test/ece"]
print(f"\nFINAL model, 40% symmetric label noise on train ({out})")
print(f"{'metric':32s}{'CCE':>10s}{'ProSelfLC-AT':>14s}")
for k in keys:
    print(f"{k:32s}{runs['cce'][k]:10.3f}{runs['proselflc_at'][k]:14.3f}")
PY
protlc predict "$OUT/proselflc_at/checkpoints/last.ckpt" "$OUT/data/test.parquet" --out "$OUT/predictions.csv"
python -c "import pandas as pd, sys; print(pd.read_csv(sys.argv[1]).iloc[:5, :6].to_string(index=False))" "$OUT/predictions.csv"
protlc audit "$OUT/proselflc_at/checkpoints/last.ckpt" --out "$OUT/audit.csv"
