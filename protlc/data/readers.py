"""Read family-labelled protein data: Stockholm, ProtCNN CSV shards, FASTA, TSV/CSV.

Every reader yields :class:`RecordBlock` objects: columnar chunks (pyarrow string arrays) of records
from one source file, already cleaned and validated, so that the pipeline never loops over rows in
Python. :func:`iter_records` flattens blocks into :class:`Record` tuples for callers that want one
record at a time.

Formats (``--format``; ``auto`` detects by content, see :func:`detect_format`):

* ``stockholm``: one or many alignments per file (Pfam-A.seed style), see :mod:`protlc.data.stockholm`.
* ``protcnn-csv``: a directory with ``train/``, ``dev/``, ``test/`` sub-folders of CSV shards
  (``data-000NN-of-000MM``); the split of each shard is kept; ``aligned_sequence`` is never read.
* ``fasta``: the family comes from the header, see :mod:`protlc.data.fasta`.
* ``tsv``: a delimited table (tab if the header line holds a tab, else comma) with columns
  ``family_id`` and ``sequence``, optionally ``sequence_name`` and ``family_accession``. Without
  ``sequence_name`` rows are named ``<file name>#<data row number>``.

Cleaning: FASTA/TSV sequences get :meth:`Alphabet.clean` (surrounding whitespace and one trailing
``*`` removed); Stockholm rows are de-gapped and upper-cased. Validation (one place,
:func:`protlc.data.records.check_block`) then applies :meth:`Alphabet.problem` and raises :class:`InputError` naming file,
record/line and the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from protlc import columns as col
from protlc.data import fasta, stockholm, tabular
from protlc.data.records import ProgressCallback, Record, RecordBlock, check_block, read_head
from protlc.errors import ConfigError, InputError, where

FORMATS = ("stockholm", "protcnn-csv", "fasta", "tsv")


def detect_format(path: Path) -> str:
    """Detect the input format from content (a directory: from its layout).

    Raises:
        InputError: missing path, empty file, or content that matches no format.
    """
    path = Path(path)
    if path.is_dir():
        if all((path / s).is_dir() for s in col.SPLITS):
            return "protcnn-csv"
        raise InputError(f"{path}: a directory input must hold train/, dev/ and test/ sub-folders of ProtCNN CSV shards")
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    head = read_head(path).lstrip("\ufeff \t\r\n")
    if not head:
        raise InputError(f"{path}: the file is empty")
    if head.startswith("# STOCKHOLM"):
        return "stockholm"
    if head.startswith(">"):
        return "fasta"
    header = head.splitlines()[0]
    if "\t" in header or "," in header:
        return "tsv"
    raise InputError(
        f"{where(path, line=1)}: cannot tell the format (expected '# STOCKHOLM 1.0', a FASTA '>' header or a "
        f"TSV/CSV header line); give --format"
    )


def source_files(path: Path, fmt: str) -> list[Path]:
    """The files a (file or directory) input consists of, in reading order."""
    path = Path(path)
    if fmt != "protcnn-csv":
        return [path]
    if not path.is_dir():
        raise InputError(f"{path}: protcnn-csv input must be a directory with train/, dev/, test/ sub-folders")
    files = []
    for split in col.SPLITS:
        shard_dir = path / split
        shards = sorted(p for p in shard_dir.glob("*") if p.is_file() and not p.name.startswith(".")) if shard_dir.is_dir() else []
        if not shards:
            raise InputError(f"{shard_dir}: no CSV shards (expected files like data-00000-of-00010)")
        files.extend(shards)
    return files


def read_blocks(
    path: Path,
    fmt: str = "auto",
    *,
    fasta_patterns: tuple[str, ...] | None = None,
    on_progress: ProgressCallback | None = None,
) -> Iterator[RecordBlock]:
    """Stream validated record blocks from one input (file, or ProtCNN shard directory).

    Raises:
        InputError: unreadable/empty file, bad record, invalid sequence (one line naming file + record/line).
        ConfigError: unknown format or bad FASTA pattern.
    """
    path = Path(path)
    if fmt == "auto":
        fmt = detect_format(path)
    elif fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of auto, {', '.join(FORMATS)}")
    if fmt == "protcnn-csv":
        files = [(f, f.parent.name) for f in source_files(path, fmt)]
    else:
        if path.is_dir():
            raise InputError(f"{path}: a directory, not a {fmt} file (directories are read as protcnn-csv)")
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        files = [(path, None)]
    for file, split in files:
        if fmt == "stockholm":
            blocks = stockholm.read_stockholm(file, on_progress)
        elif fmt == "fasta":
            blocks = fasta.read_fasta(file, fasta_patterns, on_progress)
        else:
            blocks = tabular.read_table(file, split=split, protcnn=fmt == "protcnn-csv", on_progress=on_progress)
        empty = True
        for block in blocks:
            empty = empty and len(block) == 0
            check_block(block)
            yield block
        if empty:
            raise InputError(f"{file}: the file holds no records")


def iter_records(path: Path, fmt: str = "auto", **kwargs) -> Iterator[Record]:
    """One :class:`Record` at a time (slow path; the pipeline uses :func:`read_blocks`)."""
    for block in read_blocks(path, fmt, **kwargs):
        yield from block.records()


