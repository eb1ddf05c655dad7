"""The prepared dataset directory: Parquet schema, atomic write, read back.

Layout::

    DIR/train.parquet, dev.parquet, test.parquet   one row per sequence, columns below
    DIR/novel.parquet                              optional (``prepare --novel-families``): every domain of
                                                   the families held out of train/dev/test, label -1
    DIR/labels.json                                [{"family_id": ..., "family_accession": ...}, ...]
                                                   indexed by label, sorted by family_id
    DIR/manifest.json                              sources + sha256, counts, filters, split and noise
                                                   settings, seeds, protlc version

Columns (names from :mod:`protlc.columns`), in this order:

====================  ==========  ===============================================================
sequence_name         string      unique within the dataset
sequence              string      the residues the model sees (train: after cropping)
label                 int32       observed (possibly noisy) label: the only label to train on
family_id             string      observed family, ``labels[label]["family_id"]``
family_accession      string      observed family's accession, null when unknown
clean_label           int32       true label (analysis only, never a model input)
clean_family_id       string      true family
is_noisy              bool        ``label != clean_label``
crop_start, crop_end  int32       kept window in the uncropped sequence (0-based, end exclusive)
length                int32       ``len(sequence) == crop_end - crop_start``
====================  ==========  ===============================================================

Novel rows (:mod:`protlc.data.novel`) have ``label = clean_label = -1`` and their true family id in
``family_id``/``clean_family_id``; that family is not in ``labels.json``. Readers of train/dev/test never
see them; :func:`has_novel` says whether a dataset has the split (its manifest's ``novel`` entry).

dev/test rows are never noisy (``label == clean_label``, crop ``0 .. length``). The family columns
are dictionary-encoded in the Parquet files and read back as plain strings. Files carry no timestamps,
so preparing the same inputs with the same options gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from protlc import columns as col
from protlc import jsonio
from protlc.atomic import atomic_dir
from protlc.data.records import first_problem
from protlc.errors import ConfigError, InputError

SCHEMA = pa.schema(
    [
        pa.field(col.SEQUENCE_NAME, pa.string(), nullable=False),
        pa.field(col.SEQUENCE, pa.string(), nullable=False),
        pa.field(col.LABEL, pa.int32(), nullable=False),
        pa.field(col.FAMILY_ID, pa.string(), nullable=False),
        pa.field(col.FAMILY_ACCESSION, pa.string()),
        pa.field(col.CLEAN_LABEL, pa.int32(), nullable=False),
        pa.field(col.CLEAN_FAMILY_ID, pa.string(), nullable=False),
        pa.field(col.IS_NOISY, pa.bool_(), nullable=False),
        pa.field(col.CROP_START, pa.int32(), nullable=False),
        pa.field(col.CROP_END, pa.int32(), nullable=False),
        pa.field(col.LENGTH, pa.int32(), nullable=False),
    ]
)
COLUMNS = tuple(SCHEMA.names)
LABELS_FILE = "labels.json"
MANIFEST_FILE = "manifest.json"
ROW_GROUP_ROWS = 1 << 16
_DICTIONARY_COLUMNS = [col.FAMILY_ID, col.FAMILY_ACCESSION, col.CLEAN_FAMILY_ID]


def split_path(dataset_dir: str | Path, split: str) -> Path:
    return Path(dataset_dir) / f"{split}.parquet"


def to_table(frame: pd.DataFrame | pa.Table) -> pa.Table:
    """Conform a split (DataFrame or Table holding at least :data:`COLUMNS`) to :data:`SCHEMA`."""
    if isinstance(frame, pd.DataFrame):
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"split frame lacks columns {missing}")
        frame = pa.Table.from_pandas(frame[list(COLUMNS)], preserve_index=False)
    return frame.select(list(COLUMNS)).cast(SCHEMA).replace_schema_metadata(None)


_NUMBER_LIST = re.compile(r"\[\s+(-?[\d.e+-]+(?:,\s+-?[\d.e+-]+)*)\s+\]")


def _write_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, row_group_size=ROW_GROUP_ROWS, compression="zstd", use_dictionary=_DICTIONARY_COLUMNS)


def _dump_json(obj) -> str:
    """Indented JSON with lists of numbers kept on one line (per-family counts, pair map)."""
    text = jsonio.dumps(obj, indent=2, ensure_ascii=False)
    return _NUMBER_LIST.sub(lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text) + "\n"


def _check_target(out_dir: Path, overwrite: bool) -> None:
    if not out_dir.exists():
        return
    if not overwrite:
        raise ConfigError(f"{out_dir} already exists; pass --overwrite to replace it, or choose another --out")
    if not out_dir.is_dir():
        raise ConfigError(f"{out_dir} exists and is not a directory; refusing to replace it")
    if any(out_dir.iterdir()) and not (out_dir / MANIFEST_FILE).is_file():
        raise ConfigError(f"{out_dir} is not empty and not a prepared dataset; refusing to replace it")


def check_output(out_dir: str | Path, overwrite: bool) -> None:
    """Fail early (before any reading) when ``out_dir`` may not be written. Raises ConfigError."""
    _check_target(Path(out_dir), overwrite)


def write_dataset(
    out_dir: str | Path,
    splits: dict[str, pd.DataFrame | pa.Table],
    labels: list[dict],
    manifest: dict,
    overwrite: bool = False,
) -> Path:
    """Write a prepared dataset directory atomically: all files appear together, or none.

    Args:
        splits: ``{"train": frame, "dev": frame, "test": frame}`` and optionally ``"novel"``; frames hold
            :data:`COLUMNS`.
        labels: label vocabulary, ``labels[i] = {"family_id": ..., "family_accession": ...}``.
        manifest: JSON-serialisable description (no timestamps, to keep reruns byte-identical).
    Raises:
        ConfigError: ``out_dir`` exists and ``overwrite`` is false, or it is not a dataset directory.
    """
    out_dir = Path(out_dir)
    _check_target(out_dir, overwrite)
    if sorted(set(splits) - {col.NOVEL}) != sorted(col.SPLITS):
        raise ValueError(f"splits must be exactly {col.SPLITS} (and optionally {col.NOVEL!r}), got {sorted(splits)}")
    try:
        with atomic_dir(out_dir, overwrite=overwrite) as tmp:
            tables = {split: to_table(frame) for split, frame in splits.items()}
            with ThreadPoolExecutor(max_workers=len(tables)) as pool:  # Arrow releases the GIL
                written = [pool.submit(_write_parquet, table, split_path(tmp, split)) for split, table in tables.items()]
                for future in written:
                    future.result()
            (tmp / LABELS_FILE).write_text(_dump_json(labels), encoding="utf-8")
            (tmp / MANIFEST_FILE).write_text(_dump_json(manifest), encoding="utf-8")
    except FileExistsError:
        raise ConfigError(f"{out_dir} appeared while writing; pass --overwrite to replace it") from None
    return out_dir


def _require_dataset(dataset_dir: str | Path, name: str) -> Path:
    dataset_dir = Path(dataset_dir)
    path = dataset_dir / name
    if not dataset_dir.is_dir() or not (dataset_dir / MANIFEST_FILE).is_file():
        raise InputError(f"{dataset_dir}: not a prepared dataset (no {MANIFEST_FILE}); create one with `protlc prepare`")
    if not path.is_file():
        raise InputError(f"{path}: missing from the prepared dataset; prepare it again")
    return path


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc}); prepare the dataset again") from None


def read_table(dataset_dir: str | Path, split: str, columns: list[str] | None = None) -> pa.Table:
    """One split (or the ``novel`` split) as a pyarrow Table (optionally only some columns). Raises InputError."""
    if split not in (*col.SPLITS, col.NOVEL):
        raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(col.SPLITS)}")
    path = _require_dataset(dataset_dir, f"{split}.parquet")
    try:
        table = pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: unreadable Parquet file ({str(exc).splitlines()[0]})") from None
    missing = [c for c in (columns or COLUMNS) if c not in table.column_names]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; prepare the dataset again")
    return table


def read_split(dataset_dir: str | Path, split: str) -> pd.DataFrame:
    """One split (``"train"``, ``"dev"``, ``"test"`` or ``"novel"``) as a DataFrame with :data:`COLUMNS`. Raises InputError."""
    return read_table(dataset_dir, split).to_pandas()


def read_labels(dataset_dir: str | Path) -> list[dict]:
    """The label vocabulary: ``labels[i]`` describes label ``i``. Raises InputError (also for a family
    listed twice)."""
    labels = _read_json(_require_dataset(dataset_dir, LABELS_FILE))
    path = Path(dataset_dir) / LABELS_FILE
    if not isinstance(labels, list) or not all(isinstance(e, dict) and col.FAMILY_ID in e for e in labels):
        raise InputError(f"{path}: expected a list of {{family_id, family_accession}}")
    first: dict = {}
    for index, entry in enumerate(labels):
        family = entry[col.FAMILY_ID]
        if family in first:
            raise InputError(f"{path}: family {family!r} is listed twice (labels {first[family]} and {index}); "
                             "prepare the dataset again")
        first[family] = index
    return labels


def check_splits(dataset_dir: str | Path, splits: dict[str, pd.DataFrame], labels: list[dict]) -> None:
    """Check what training relies on in the splits of a prepared dataset.

    Raises:
        InputError: naming the file and record for an empty split, an empty or invalid sequence, a label
            outside ``labels.json`` (too short for the dataset), or a family that ``labels.json`` gives
            another label.
    """
    families = np.array([entry[col.FAMILY_ID] for entry in labels], dtype=object)
    labels_path = Path(dataset_dir) / LABELS_FILE
    for split, df in splits.items():
        path = split_path(dataset_dir, split)
        if not len(df):
            raise InputError(f"{path}: no sequences; every split needs at least one (prepare the dataset again)")
        names = df[col.SEQUENCE_NAME].astype(str).to_numpy()
        sequences = df[col.SEQUENCE]
        if sequences.isna().any():
            row = int(np.flatnonzero(sequences.isna().to_numpy())[0])
            raise InputError(f"{path}, record {names[row]!r}: empty sequence")
        bad = first_problem(pa.array(sequences.astype(str).tolist(), pa.string()))
        if bad is not None:
            raise InputError(f"{path}, record {names[bad[0]]!r}: {bad[1]}")
        for column, family_column in ((col.LABEL, col.FAMILY_ID), (col.CLEAN_LABEL, col.CLEAN_FAMILY_ID)):
            if column not in df:
                continue
            values = df[column].to_numpy()
            outside = np.flatnonzero((values < 0) | (values >= len(labels)))
            if len(outside):
                row = int(outside[0])
                raise InputError(f"{path}, record {names[row]!r}: {column} {int(values[row])} is not in {labels_path} "
                                 f"({len(labels)} families, labels 0-{len(labels) - 1}); prepare the dataset again")
            if family_column in df:
                wrong = np.flatnonzero(families[values] != df[family_column].to_numpy(dtype=object))
                if len(wrong):
                    row = int(wrong[0])
                    raise InputError(f"{path}, record {names[row]!r}: {column} {int(values[row])} is "
                                     f"{families[values[row]]!r} in {labels_path}, but the row says "
                                     f"{df[family_column].iloc[row]!r}; prepare the dataset again")


def has_novel(dataset_dir: str | Path) -> bool:
    """Whether the dataset holds a ``novel`` split (its manifest records novel families). Raises InputError."""
    return bool(read_manifest(dataset_dir).get("novel"))


def check_novel(dataset_dir: str | Path, df: pd.DataFrame, labels: list[dict]) -> None:
    """Check the ``novel`` split: domains, valid sequences, label -1, families that ``labels.json`` lacks.

    Raises:
        InputError: naming the file and record, as :func:`check_splits`.
    """
    path = split_path(dataset_dir, col.NOVEL)
    if not len(df):
        raise InputError(f"{path}: no sequences; the manifest lists novel families (prepare the dataset again)")
    names = df[col.SEQUENCE_NAME].astype(str).to_numpy()
    bad = first_problem(pa.array(df[col.SEQUENCE].fillna("").astype(str).tolist(), pa.string()))
    if bad is not None:
        raise InputError(f"{path}, record {names[bad[0]]!r}: {bad[1] or 'empty sequence'}")
    for column in (col.LABEL, col.CLEAN_LABEL):
        wrong = np.flatnonzero(df[column].to_numpy() != -1)
        if len(wrong):
            raise InputError(f"{path}, record {names[wrong[0]]!r}: {column} {int(df[column].iloc[wrong[0]])}; a novel "
                             "domain has no class, its label must be -1 (prepare the dataset again)")
    known = {entry[col.FAMILY_ID] for entry in labels}
    clash = np.flatnonzero(df[col.FAMILY_ID].isin(known).to_numpy())
    if len(clash):
        raise InputError(f"{path}, record {names[clash[0]]!r}: family {df[col.FAMILY_ID].iloc[clash[0]]!r} is also a "
                         f"known family in {Path(dataset_dir) / LABELS_FILE}; prepare the dataset again")


def fingerprint(*paths: str | Path) -> str:
    """sha256 over the bytes of ``paths`` (a dataset: :func:`dataset_files`; a DMS table: the table)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def dataset_files(dataset_dir: str | Path) -> list[Path]:
    """The files that identify a prepared dataset: its manifest (sources with their sha256, split, noise,
    seeds, counts) and its label vocabulary."""
    return [_require_dataset(dataset_dir, MANIFEST_FILE), _require_dataset(dataset_dir, LABELS_FILE)]


def read_manifest(dataset_dir: str | Path) -> dict:
    """The dataset's manifest (sources, counts, settings). Raises InputError."""
    return _read_json(_require_dataset(dataset_dir, MANIFEST_FILE))
