"""protlc reproduce: a tiny grid end to end (table layout, figures, skip, resume), table formatting, bad grids."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from protlc.errors import ConfigError, TrainingInterrupted
from protlc.reproduce import load_grid, reproduce
from protlc.reproduce.grid import preset_path
from protlc.reproduce.claims import check_claims, claims_markdown
from protlc.reproduce.table import (PAPER_METHODS, PAPER_TABLE, Stat, aggregate, best_of, noise_table, to_csv,
                                    to_markdown)

REPO = Path(__file__).resolve().parents[1]
LOSSES = REPO / "configs" / "losses"


def write_grid(path: Path, data_path: Path, **changes) -> Path:
    grid = {
        "data": str(data_path),
        "prepare": {"split": [0.6, 0.2, 0.2], "split_seed": 0},
        "noise": [{"name": "cropping", "label": "cropping", "crop_noise": 0.5, "crop_fraction": [0.4, 0.8]},
                  {"name": "cropping_label", "label": "cropping + label", "crop_noise": 0.5,
                   "crop_fraction": [0.4, 0.8], "label_noise": 0.4}],
        "train": {"set": {"model.preset": "tiny", "trainer.max_epochs": 1, "data.batch_size": 16,
                          "optim.warmup_steps": 2, "dynamics.every_n_steps": 3, "trainer.log_every_n_steps": 2}},
        "methods": [{"label": "CCE", "config": str(LOSSES / "cce.yaml")},
                    {"label": "ProSelfLC", "config": str(LOSSES / "proselflc_at.yaml"), "note": "AT"}],
        "seeds": [0, 1],
        **changes,
    }
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """5 real Pfam families × 32 domains from the embedded sample."""
    df = pd.read_csv(REPO / "data" / "exthomfam_16fam.tsv", sep="\t")
    keep = sorted(df["family_id"].unique())[:5]
    path = tmp_path_factory.mktemp("data") / "five.tsv"
    df[df["family_id"].isin(keep)].to_csv(path, sep="\t", index=False)
    return path


@pytest.fixture(scope="module")
def finished(tiny_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grid")
    grid = load_grid(write_grid(tmp / "grid.yaml", tiny_data))
    out = tmp / "out"
    with pytest.MonkeyPatch.context() as mp:  # each run's own PNGs cost ~1 s apiece and are tested in test_train
        mp.setattr("protlc.training.run.plots.write_run_plots", lambda run_dir: None)
        summary = reproduce(grid, out, jobs=1, threads=1, log=lambda _: None)
    return grid, out, summary


@pytest.mark.slow
def test_tiny_grid_writes_table_in_paper_layout_and_figures(finished, figure_content):
    grid, out, summary = finished
    assert summary["cells_trained"] == 8 and summary["cells_failed"] == 0
    table = pd.read_csv(out / "noise_table.csv")
    assert list(table.columns[:6]) == ["noise", "metric", "data", "CCE", "ProSelfLC", "best"]
    assert table[["noise", "metric", "data"]].values.tolist()[:6] == [
        ["cropping", "accuracy", "test"], ["cropping", "accuracy", "train"],
        ["cropping", "1-H(p)/H(u)", "test"], ["cropping", "1-H(p)/H(u)", "train"],
        ["cropping", "max p", "test"], ["cropping", "max p", "train"]]
    assert len(table) == 12 and table["noise"].iloc[6] == "cropping + label"
    assert table["CCE"].str.match(r"^\d+\.\d ± \d+\.\d$").all()  # two seeds: mean ± std
    assert (table["CCE paper"].iloc[0], table["ProSelfLC paper"].iloc[7]) == (88.7, 75.7)
    assert table["CCE diff"].iloc[0] == pytest.approx(table["CCE mean"].iloc[0] - 88.7, abs=1e-3)
    assert set(table["best"].str.split(";").explode()) <= {"CCE", "ProSelfLC"}
    md = (out / "noise_table.md").read_text()
    assert "| noise | metric | data | CCE | ProSelfLC |" in md and "**" in md and "Expected calibration error" in md
    assert len(pd.read_csv(out / "ece_table.csv")) == 4  # 2 noise settings × test, train
    for name in ("cropping", "cropping_label"):
        png = out / "figures" / f"dynamics_{name}.png"
        width, height, ink, colours = figure_content(png)
        assert width >= 800 and height >= 400 and ink > 0.02 and colours > 10  # drawn curves, not a blank page
    saved = json.loads((out / "summary.json").read_text())
    assert len(saved["cells"]) == 8 and all("test/accuracy" in c["metrics"] for c in saved["cells"])
    assert all(c["wall_seconds"] > 0 for c in saved["cells"])


@pytest.mark.slow
def test_second_invocation_skips_finished_cells_and_resumes_unfinished(finished):
    grid, out, _ = finished
    metrics = sorted(out.glob("runs/*/*/seed*/final_metrics.json"))
    before = {p: p.stat().st_mtime_ns for p in metrics}
    summary = reproduce(grid, out, jobs=1, threads=1, log=lambda _: None)
    assert summary["cells_skipped"] == 8 and summary["cells_trained"] == 0
    assert {p: p.stat().st_mtime_ns for p in metrics} == before
    # a cell killed after its last checkpoint but before its final metrics is resumed, not restarted
    metrics[0].unlink()
    partial = reproduce(grid, out, collect_only=True, log=lambda _: None)
    assert partial["cells_missing"] == 1 and not metrics[0].exists()
    assert pd.read_csv(out / "noise_table.csv")["CCE n"].tolist()[:2] == [1, 1]  # cropping/cce/seed0 missing
    summary = reproduce(grid, out, jobs=1, threads=1, log=lambda _: None)
    statuses = [c["status"] for c in summary["cells"]]
    assert statuses.count("resumed") == 1 and statuses.count("skipped") == 7
    assert metrics[0].is_file()


def test_an_interrupted_cell_stops_the_grid_with_a_rerun_hint(tiny_data, tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM inside a cell must stop reproduce, not be filed as one failed cell."""
    def interrupted(dataset, run_dir, config, resume=False):
        raise TrainingInterrupted(f"{run_dir}: training interrupted at epoch 0")

    monkeypatch.setattr("protlc.training.run.train", interrupted)
    grid = load_grid(write_grid(tmp_path / "grid.yaml", tiny_data, seeds=[0]))
    with pytest.raises(TrainingInterrupted, match="reproduce interrupted in cell .*rerun the same command"):
        reproduce(grid, tmp_path / "out", jobs=1, threads=1, log=lambda _: None)


@pytest.mark.slow
def test_other_grid_in_same_out_dir_is_refused(finished, tiny_data, tmp_path):
    _, out, _ = finished
    other = load_grid(write_grid(tmp_path / "g.yaml", tiny_data, seeds=[0]))
    other.train_set = {**other.train_set, "trainer.max_epochs": 2}
    with pytest.raises(ConfigError, match="different train"):
        reproduce(other, out, log=lambda _: None)


def test_mean_std_formatting_and_best_of_row():
    assert aggregate([88.0, 90.0]).format() == "89.0 ± 1.4"
    assert aggregate([0.5]).format() == "0.5"
    assert aggregate([]).format() == "—"
    assert aggregate([float("nan"), 70.0, 72.0]) == Stat(71.0, pytest.approx(1.414, abs=1e-3), 2)
    stats = {"A": aggregate([90.04]), "B": aggregate([90.01, 90.03]), "C": aggregate([80.0])}
    assert best_of(stats) == ["A", "B"]  # tied at one decimal
    assert best_of(stats, lower_is_better=True) == ["C"]
    values = {("cropping", "accuracy", "test", "CCE"): [88.0, 90.0], ("cropping", "accuracy", "test", "LS"): [95.0]}
    rows = noise_table(values, ["cropping"], ["CCE", "LS"])
    assert [(r.metric, r.data) for r in rows][:2] == [("accuracy", "test"), ("accuracy", "train")]
    assert rows[0].best == ["LS"] and rows[1].best == []
    md = to_markdown(rows, ["CCE", "LS"])
    assert "| cropping | accuracy | test | 89.0 ± 1.4 | **95.0** |" in md
    assert "| cropping | accuracy | train | — | — |" in md
    assert "| cropping | accuracy | test | +0.3 | +4.6 |" in to_markdown(rows, ["CCE", "LS"], "diff")
    assert "| cropping | accuracy | test | 88.7 | **90.4** |" in to_markdown(rows, ["CCE", "LS"], "paper")
    first = to_csv(rows, ["CCE", "LS"]).splitlines()[1]
    assert first.startswith("cropping,accuracy,test,89.0 ± 1.4,95.0,LS,89.0000,1.4142,2,88.7000,0.3000,")
    assert len(PAPER_TABLE) == 12


def test_claims_hold_on_the_published_table_and_fail_when_numbers_say_so():
    values = {(*key, m): [v] for key, row in PAPER_TABLE.items() for m, v in zip(PAPER_METHODS, row)}
    rows = noise_table(values, ["cropping", "cropping + label"], list(PAPER_METHODS))
    results = check_claims(rows, list(PAPER_METHODS))
    assert len(results) == 8 and all(ok for _, ok, _ in results), [r for r in results if not r[1]]
    values["cropping + label", "accuracy", "test", "LS"] = [93.0, 95.0]
    rows = noise_table(values, ["cropping", "cropping + label"], list(PAPER_METHODS))
    failed = [(claim, details) for claim, ok, details in check_claims(rows, list(PAPER_METHODS)) if not ok]
    assert failed == [("cropping + label: ProSelfLC has the best test accuracy",
                       ["accuracy test: ProSelfLC 92.2 vs LS 94.0 ± 1.4 — does not hold"])]
    values["cropping + label", "accuracy", "test", "LS"] = [91.0, 94.0]  # 92.5 ± 2.1: within the spread
    rows = noise_table(values, ["cropping + label"], list(PAPER_METHODS))
    assert check_claims(rows, list(PAPER_METHODS))[0][2] == [
        "accuracy test: ProSelfLC 92.2 vs LS 92.5 ± 2.1 — does not hold (margin 0.3 pp < seed std 2.1)"]
    values["cropping + label", "accuracy", "test", "LS"] = [90.0, 93.0]  # 91.5 ± 2.1: ProSelfLC above, within the spread
    rows = noise_table(values, ["cropping + label"], list(PAPER_METHODS))
    claim, ok, details = check_claims(rows, list(PAPER_METHODS))[0]
    assert ok and details == [
        "accuracy test: ProSelfLC 92.2 vs LS 91.5 ± 2.1 — holds only on the means (margin 0.7 pp < seed std 2.1)"]
    assert f"**{claim}: holds only within the seed spread**" in claims_markdown(rows, list(PAPER_METHODS))
    assert check_claims(rows, ["CCE", "ProSelfLC"]) == []


@pytest.mark.parametrize("change, message", [
    ({"seeds": []}, "'seeds' must be a non-empty list"),
    ({"noise": [{"name": "a b", "crop_noise": 0.5}]}, "noise\\[0\\]: 'name' must be a word"),
    ({"noise": [{"name": "x", "label_noise": 1.5}]}, "noise\\[0\\]: --label-noise 1.5"),
    ({"methods": [{"label": "CCE", "config": "missing.yaml"}]}, "methods\\[0\\].config: .*does not exist"),
    ({"train": {"set": {"trainer.max_epoch": 1}}}, "unknown config key 'trainer.max_epoch'"),
    ({"epochs": 3}, "unknown key\\(s\\) epochs"),
    ({"data": None}, "no 'data' in the grid: pass --data"),
])
def test_bad_grid_is_one_line_config_error(tiny_data, tmp_path, change, message):
    path = write_grid(tmp_path / "bad.yaml", tiny_data, **change)
    with pytest.raises(ConfigError, match=message) as info:
        load_grid(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.slow
def test_presets_load_and_cli_reports_bad_grid_in_one_line(tmp_path):
    cpu = load_grid(preset_path("cpu"))
    assert [m.label for m in cpu.methods] == ["CCE", "LS", "CP", "Boot-soft", "ProSelfLC"]
    assert len(cpu.seeds) >= 3 and [s.label for s in cpu.noise] == ["cropping", "cropping + label"]
    assert load_grid(preset_path("full"), data=[REPO / "data" / "pfam_seeds"]).train_config(
        cpu.methods[0], 0)["model"]["preset"] == "paper"
    bad = tmp_path / "bad.yaml"
    bad.write_text("seeds: [1]\nnoise: 3\n")
    result = subprocess.run([sys.executable, "-m", "protlc", "reproduce", "--config", str(bad), "--out",
                             str(tmp_path / "o")], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "protlc: error:" in result.stderr
    assert not (tmp_path / "o").exists()
