"""The issue-3 experiment script end to end on the embedded sample (tiny network, one epoch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from protlc.errors import InputError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_classify_exthomfam_runs_the_three_runs_the_audits_and_the_figure(tmp_path, figure_content):
    env = {**os.environ, "PROTLC_EXTHOMFAM": str(REPO / "data" / "exthomfam_16fam.tsv"),
           "PROTLC": f"{sys.executable} -m protlc", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(REPO / "workflows" / "classify_exthomfam.sh"), str(tmp_path), "tiny", "cpu",
                           "32", "1", "2e-3", "0.3"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    tag = "tiny-e1-lr2e-3-tau0.3"
    summary = json.loads((tmp_path / f"summary-{tag}.json").read_text())
    assert sorted(summary) == [f"{tag}-clean-cce", f"{tag}-r40-cce", f"{tag}-r40-proselflc_at"]
    assert "precision" in summary[f"{tag}-r40-proselflc_at"]["audit"]
    width, height, ink, colours = figure_content(tmp_path / f"dynamics-r40-{tag}.png")
    assert width >= 800 and height >= 400 and ink > 0.02 and colours > 10  # panels with curves, not a blank page
    configs = {run: yaml.safe_load((tmp_path / f"{tag}-{run}" / "config.yaml").read_text())
               for run in ("clean-cce", "r40-cce", "r40-proselflc_at")}
    assert {run: c["optim"]["lr"] for run, c in configs.items()} == dict.fromkeys(configs, 0.002)
    assert configs["r40-proselflc_at"]["loss"]["tau"] == 0.3  # TAU goes to the ProSelfLC-AT run only
    assert all(c["loss"].get("tau") != 0.3 for run, c in configs.items() if run != "r40-proselflc_at")
    dynamics = pd.read_csv(tmp_path / f"{tag}-r40-cce" / "dynamics.csv")
    assert len(dynamics) == 1  # one epoch of 7 steps: only the final model's point


def _novel_families_workflow(name: str = "novel_families"):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "workflows" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_novel_results(out: Path, settings: list[str], seeds: list[int]) -> pd.DataFrame:
    table = pd.read_csv(out / "results.csv")
    assert len(table) == len(settings) * 2 * len(seeds)
    assert sorted(set(table["setting"])) == sorted(settings) and set(table["loss"]) == {"CCE", "ProSelfLC-AT"}
    for key in ("test/accuracy", "test/confidence_entropy", "test/ece", "novel/auroc_max_p", "novel/auroc_entropy",
                "novel/auroc_energy", "novel/auroc_nearest", "novel/auroc_nearest_kmer", "novel/flagged_novel", "novel/flagged_known_test"):
        assert table[key].between(0, 1).all(), key
    assert set(table["novel/chosen_score"]) <= {"max_p", "entropy", "energy", "nearest", "nearest_kmer"}
    # every cell holds out the same 10 families (fixed split seed); the run's seed picks which half evaluates
    evaluation = table.groupby("seed")["novel/evaluation_families"]
    assert (evaluation.nunique() == 1).all() and len(table["novel/evaluation_families"][0].split(",")) == 5
    assert (out / "input.tsv").is_file() and pd.read_csv(out / "input.tsv", sep="\t").groupby("family_id").size().max() <= 20
    summary = pd.read_csv(out / "results_summary.csv")
    assert len(summary) == len(settings) * 2 and (summary["test/accuracy count"] == len(seeds)).all()
    md = (out / "results.md").read_text().splitlines()
    assert md[0].startswith("| noise | loss | seeds | test accuracy |") and len(md) == 2 + len(settings) * 2
    return table


def test_novel_families_workflow_on_the_tiny_sample(tmp_path, capsys):
    """End to end in this process (tiny network, one epoch, two settings); a rerun trains nothing."""
    workflow = _novel_families_workflow()
    args = [str(tmp_path), "--data", str(REPO / "data" / "exthomfam_tiny32.tsv"), "--max-per-family", "12",
            "--preset", "tiny", "--seeds", "0",
            "--max-epochs", "1", "--settings", "clean,confusable40", "--set", "data.batch_size=32"]
    workflow.main(args)
    table = _check_novel_results(tmp_path, ["clean", "confusable40"], [0])
    manifest = json.loads((tmp_path / "data" / "confusable40" / "seed0" / "manifest.json").read_text())
    assert manifest["novel"]["num_families"] == 10 and manifest["noise"]["label"]["kind"] == "confusable"
    capsys.readouterr()
    workflow.main(args)
    assert "0 to train" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "results.csv").equals(table)
    _check_hmmer_post_step(tmp_path, table)


def _check_hmmer_post_step(out: Path, table: pd.DataFrame) -> None:
    """workflows/novel_families_hmmer.py on a finished OUT: one phmmer search per split shared by every
    setting, the network's numbers recomputed as final_metrics.json has them, HMMER's and the fused ones."""
    import importlib.util

    if importlib.util.find_spec("pyhmmer") is None:
        return
    hmmer = _novel_families_workflow("novel_families_hmmer")
    results = hmmer.collect(out, log=lambda line: None)
    assert len(results) == len(table) and results["consistency/ok"].all()
    assert sorted(p.name.split("-")[0] for p in (out / "hmmer").glob("*.npz")) == ["dev", "novel", "test"]
    assert np.allclose(results["novel/auroc_nearest"], table["novel/auroc_nearest"])
    for key in ("hmmer/auroc", "hmmer/flagged_novel_evalue", "hmmer/flagged_known_test_evalue", "fused/auroc",
                "fused/flagged_novel_at_evalue_rate", "hmmer/flagged_novel_at_network_rate"):
        assert results[key].between(0, 1).all(), key
    # E-values do not depend on labels: HMMER's numbers are the same in both settings
    assert results.groupby("seed")["hmmer/auroc"].nunique().eq(1).all()
    md = (out / "hmmer_results.md").read_text().splitlines()
    assert md[0].startswith("| noise | loss | seeds | network AUROC |") and md[2].endswith("| 1/1 |")
    assert hmmer.collect(out, log=lambda line: None).equals(results)  # from the caches
    with pytest.raises(InputError, match="no finished cell"):
        hmmer.collect(out / "data")


@pytest.mark.slow
def test_novel_families_workflow_all_settings_two_seeds_subsampled(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "workflows" / "novel_families.py"), str(tmp_path), "--data",
                           str(REPO / "data" / "exthomfam_tiny32.tsv"), "--max-per-family", "20", "--preset", "tiny",
                           "--seeds", "0,1", "--max-epochs", "1", "--jobs", "2"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    table = _check_novel_results(tmp_path, ["clean", "symmetric40", "confusable20", "confusable40"], [0, 1])
    assert " ± " in (tmp_path / "results.md").read_text() and len(table) == 16
