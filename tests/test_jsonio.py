"""Strict JSON everywhere protlc writes JSON: NaN and infinities become null, and a DMS run whose
correlations are undefined (constant test scores, a finished run resumed) neither writes NaN nor warns."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr, spearmanr

from protlc import jsonio
from protlc.metrics import correlation
from protlc.training.fitness_run import train_dms

PAB1_WT = "GNIFIKNLHPDIDNKALYDTFSVFGDILSSKIATDENGKSKGFGFVHFEEEGAAKEAIDALNGMLLNGQEIYVAP"
PAB1_OFFSET = 126


def _refuse(constant):
    raise ValueError(f"non-standard JSON constant {constant}")


def strict_loads(text: str):
    """``json.loads`` that fails on NaN, Infinity and -Infinity, as any strict JSON parser does."""
    return json.loads(text, parse_constant=_refuse)


def test_non_finite_floats_become_null_and_numpy_values_plain():
    obj = {"nan": float("nan"), "inf": float("inf"), "np_nan": np.float32("nan"), "np_inf": np.float64("-inf"),
           "np_int": np.int64(3), "np_float": np.float32(0.5), "nested": [1.5, (float("nan"), {"x": np.nan})],
           "array": np.array([1.0, np.inf])}
    text = jsonio.dumps(obj)
    assert strict_loads(text) == {"nan": None, "inf": None, "np_nan": None, "np_inf": None, "np_int": 3,
                                  "np_float": 0.5, "nested": [1.5, [None, {"x": None}]], "array": [1.0, None]}
    with pytest.raises(ValueError):
        strict_loads(json.dumps({"x": float("nan")}))  # the parser really refuses what json writes by default


def test_write_json_is_atomic_and_strict(tmp_path):
    path = jsonio.write_json(tmp_path / "m.json", {"a": float("nan"), "b": 1}, sort_keys=True)
    assert path.read_text() == '{\n  "a": null,\n  "b": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_correlation_is_none_where_undefined_and_never_warns():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert correlation([1.0, 1.0, 1.0], [0.1, 0.5, 0.2]) is None
        assert correlation([0.1, 0.5, 0.2], [2.0, 2.0, 2.0], "spearman") is None
        assert correlation([1.0], [2.0]) is None
        assert correlation([1.0, np.nan, 2.0], [1.0, 2.0, 3.0]) is None
    a, b = np.random.default_rng(0).normal(size=(2, 50))
    assert correlation(a, b) == pytest.approx(pearsonr(a, b)[0], abs=1e-12)
    assert correlation(a, b, "spearman") == pytest.approx(spearmanr(a, b)[0], abs=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert correlation([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], "spearman") == pytest.approx(-1.0)


def test_dms_run_with_undefined_correlations_writes_strict_json_without_warnings(nn4dms, tmp_path, dms_tiny_config):
    """Constant measured test scores: test and ridge Pearson/Spearman are undefined -> null; resuming the
    run killed after its last epoch trains no batch, so its throughput rates are undefined -> null too."""
    table = pd.read_csv(nn4dms / "pab1" / "pab1.tsv", sep="\t")
    splits = tmp_path / "splits"
    shutil.copytree(nn4dms / "pab1" / "splits_main", splits)
    test_rows = np.loadtxt(splits / "stest.txt", dtype=int)
    table.loc[test_rows, "score"] = 0.25
    table.to_csv(tmp_path / "pab1.tsv", sep="\t", index=False)
    config = dms_tiny_config("trainer.max_epochs=1")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        train_dms(tmp_path / "pab1.tsv", tmp_path / "run", PAB1_WT, config, offset=PAB1_OFFSET, splits_dir=splits)
    metrics = strict_loads((tmp_path / "run" / "final_metrics.json").read_text())
    for key in ("test/pearson", "test/spearman", "ridge/test/pearson", "ridge/test/spearman"):
        assert metrics[key] is None, key
    assert isinstance(metrics["tune/pearson"], float) and isinstance(metrics["test/mse"], float)
    assert (tmp_path / "run" / "plots" / "test_scatter.png").is_file()

    (tmp_path / "run" / "final_metrics.json").unlink()  # killed after its last epoch, before the final step
    resumed = train_dms(tmp_path / "pab1.tsv", tmp_path / "run", PAB1_WT, config, offset=PAB1_OFFSET,
                        splits_dir=splits, resume=True)
    metrics = strict_loads((tmp_path / "run" / "final_metrics.json").read_text())
    assert resumed["time/train_sequences_per_second"] is None
    assert metrics["time/train_sequences_per_second"] is None and metrics["time/train_seconds"] == 0.0
