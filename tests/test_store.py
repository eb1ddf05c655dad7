"""The prepared dataset directory: schema, atomic write, read back, overwrite rules."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from protlc import columns as col
from protlc.data import store
from protlc.data.prepare import PrepareOptions, prepare_dataset
from protlc.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def prepared(embedded_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "ds"
    prepare_dataset([embedded_dir / "exthomfam_16fam.tsv"], out, PrepareOptions(label_noise=0.3, crop_noise=0.5, seed=4))
    return out


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_schema_and_contents(prepared):
    train = store.read_split(prepared, "train")
    assert list(train.columns) == list(store.COLUMNS)
    for name in (col.LABEL, col.CLEAN_LABEL, col.CROP_START, col.CROP_END, col.LENGTH):
        assert train[name].dtype == np.int32
    assert train[col.IS_NOISY].dtype == bool
    assert (train[col.SEQUENCE].str.len() == train[col.LENGTH]).all()
    assert (train[col.CROP_END] - train[col.CROP_START] == train[col.LENGTH]).all()
    labels = store.read_labels(prepared)
    families = [entry[col.FAMILY_ID] for entry in labels]
    assert families == sorted(families) and len(families) == 16
    assert (train[col.FAMILY_ID] == np.array(families)[train[col.LABEL]]).all()
    assert (train[col.CLEAN_FAMILY_ID] == np.array(families)[train[col.CLEAN_LABEL]]).all()
    assert train[col.FAMILY_ACCESSION].isna().all()  # extHomFam has no accessions
    schema = pq.read_schema(prepared / "train.parquet")
    assert schema.field(col.FAMILY_ID).type == pa.string()
    assert b"pandas" not in (schema.metadata or {})  # no pandas/timestamp metadata in the files
    chunk = pq.ParquetFile(prepared / "train.parquet").metadata.row_group(0)
    encodings = {chunk.column(i).path_in_schema: chunk.column(i).encodings for i in range(chunk.num_columns)}
    assert "RLE_DICTIONARY" in encodings[col.FAMILY_ID] and "RLE_DICTIONARY" not in encodings[col.SEQUENCE]


def test_manifest(prepared):
    manifest = store.read_manifest(prepared)
    assert manifest["counts"] == {"train": 416, "dev": 48, "test": 48}
    assert manifest["sources"][0]["path"].endswith("exthomfam_16fam.tsv") and len(manifest["sources"][0]["sha256"]) == 64
    assert manifest["noise"]["label"]["noisy"] == round(0.3 * 416)
    assert manifest["noise"]["seed"] == 4 and manifest["split"]["seed"] == 4
    assert manifest["family_counts"]["ADF"] == [26, 3, 3]
    assert "time" not in json.dumps(manifest).lower()


def test_roundtrip_from_dataframes_is_byte_identical(prepared, tmp_path):
    splits = {s: store.read_split(prepared, s) for s in col.SPLITS}
    store.write_dataset(tmp_path / "copy", splits, store.read_labels(prepared), store.read_manifest(prepared))
    for name in ("train.parquet", "dev.parquet", "test.parquet", "labels.json", "manifest.json"):
        assert digest(tmp_path / "copy" / name) == digest(prepared / name), name


def test_overwrite_rules(prepared, tmp_path):
    splits = {s: store.read_split(prepared, s) for s in col.SPLITS}
    args = (splits, store.read_labels(prepared), store.read_manifest(prepared))
    target = tmp_path / "ds"
    store.write_dataset(target, *args)
    with pytest.raises(ConfigError, match="already exists; pass --overwrite"):
        store.write_dataset(target, *args)
    store.write_dataset(target, *args, overwrite=True)
    assert sorted(p.name for p in target.iterdir()) == ["dev.parquet", "labels.json", "manifest.json", "test.parquet", "train.parquet"]
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    with pytest.raises(ConfigError, match="not a prepared dataset; refusing"):
        store.write_dataset(precious, *args, overwrite=True)
    assert (precious / "thesis.tex").exists()


def test_failed_write_leaves_nothing(prepared, tmp_path, monkeypatch):
    splits = {s: store.read_split(prepared, s) for s in col.SPLITS}

    def broken(table, path):
        path.write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(store, "_write_parquet", broken)
    with pytest.raises(OSError, match="disk full"):
        store.write_dataset(tmp_path / "ds", splits, store.read_labels(prepared), store.read_manifest(prepared))
    assert list(tmp_path.iterdir()) == []


def test_reading_something_else(tmp_path, prepared):
    with pytest.raises(InputError, match="not a prepared dataset"):
        store.read_split(tmp_path, "train")
    with pytest.raises(ConfigError, match="unknown split"):
        store.read_split(prepared, "validation")
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(InputError, match="train.parquet: missing"):
        store.read_split(tmp_path, "train")
    with pytest.raises(InputError, match="not valid JSON"):
        store.read_manifest(tmp_path)


def test_frame_missing_a_column(prepared, tmp_path):
    splits = {s: store.read_split(prepared, s) for s in col.SPLITS}
    splits["dev"] = splits["dev"].drop(columns=[col.IS_NOISY])
    with pytest.raises(ValueError, match="is_noisy"):
        store.write_dataset(tmp_path / "ds", splits, [], {})
    assert not (tmp_path / "ds").exists()
    assert isinstance(splits["train"], pd.DataFrame)


def test_atomic_outputs_get_umask_permissions_not_owner_only(tmp_path):
    import os
    from protlc.atomic import atomic_dir, atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "out.txt", "x")
        with atomic_dir(tmp_path / "outdir") as d:
            (d / "f").write_text("y")
    finally:
        os.umask(old)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "outdir").stat().st_mode & 0o777 == 0o755
