"""benchmarks/bench_gpu.py: the one-line stop without CUDA, the GPU table it feeds, and (slow) its CPU smoke test."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_without_cuda_it_stops_with_one_line():
    done = subprocess.run([sys.executable, str(BENCH / "bench_gpu.py")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("bench_gpu: no CUDA device visible")
    assert "--device cpu --quick" in done.stderr


def test_gpu_table_from_records(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import table

    run = {"benchmark": "gpu", "date": "2027-01-02", "git_commit": "abc1234", "gpu": "NVIDIA H200", "torch": "2.13.0",
           "cuda": "12.8", "quick": False, "bench_seconds": 281.0}
    records = [
        {**run, "date": "2027-01-01", "part": "predict", "sequences": 60_000, "sequences_per_second": 1.0,
         "wall_seconds": 1.0},  # an older run: not shown
        {**run, "part": "matmul", "tflops": 760.0, "sizes": [{"n": 8192}], "datasheet_tflops": 989.4},
        {**run, "part": "step", "preset": "paper", "mode": "compiled", "tokens_per_batch": 8192,
         "residues_per_second": 1.2e6, "sequences_per_second": 9000.0, "seconds_per_step": 0.005, "mfu": 0.3,
         "mfu_padded": 0.38, "padding_fraction": 0.21, "mfu_datasheet": 0.23, "recompiled_while_timed": 0,
         "peak_memory_gib": 3.0},
        {**run, "part": "predict", "sequences": 60_000, "sequences_per_second": 21_000.0, "wall_seconds": 2.9},
        {**run, "git_commit": "def5678", "note": "probe", "part": "step", "preset": "paper", "mode": "eager",
         "tokens_per_batch": 65536, "residues_per_second": 5e5, "sequences_per_second": 5000.0,
         "seconds_per_step": 0.09, "mfu": 0.13, "mfu_padded": 0.17, "padding_fraction": 0.2,
         "recompiled_while_timed": 0, "peak_memory_gib": 8.0},  # a second probe of the same lease
    ]
    text = table.gpu_section(records)
    assert text.startswith("NVIDIA H200, torch 2.13.0 (CUDA 12.8), commits abc1234, def5678, 2027-01-02")
    assert "65,536 tokens/batch (probe, def5678)" in text and "MFU 13.0%" in text
    assert "760 TFLOP/s (datasheet 989)" in text and "MFU 30.0% of the matmul peak" in text
    assert "21,000 seq/s" in text and "1 seq/s" not in text
    assert "not measured" in table.gpu_section([]) and "see GPU below" not in table.score_section(records)


@pytest.mark.slow
def test_cpu_smoke_run_measures_every_part(tmp_path):
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(BENCH / "bench_gpu.py"), "--device", "cpu", "--quick"],
                          capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    parts = {r["part"] for r in records}
    assert parts == {"matmul", "step", "train", "predict", "score"}
    steps = [r for r in records if r["part"] == "step"]
    assert {(r["preset"], r["mode"]) for r in steps} == {(p, m) for p in ("small", "tiny") for m in ("eager", "compiled")}
    assert all(r["residues_per_second"] > 0 and r["recompiled_while_timed"] == 0 for r in steps)
    train = next(r for r in records if r["part"] == "train")
    assert {"time/startup", "time/fit", "time/final_evaluation", "time/plots", "time/total"} <= set(train)
    assert next(r for r in records if r["part"] == "predict")["sequences"] == 2000
    assert next(r for r in records if r["part"] == "score")["variants"] == 5000
    print(f"CPU smoke run: {seconds:.0f} s")  # under 60 s on an idle 2-core machine
