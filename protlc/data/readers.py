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
:func:`check_block`) then applies :meth:`Alphabet.problem` and raises :class:`InputError` naming file,
record/line and the problem.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from protlc import columns as col
from protlc.alphabet import ALPHABET
from protlc.errors import ConfigError, InputError, where

FORMATS = ("stockholm", "protcnn-csv", "fasta", "tsv")
ProgressCallback = Callable[[int], None]  # called with the number of records just read

class Record(NamedTuple):
    """One labelled sequence. ``location`` names file and record/line for error messages."""

    name: str
    family_id: str
    family_accession: str | None
    sequence: str
    location: str
    split: str | None = None  # "train"/"dev"/"test" when the source fixes the split


@dataclass
class RecordBlock:
    """A columnar chunk of records read from one source file.

    ``names``, ``family_ids``, ``sequences``: non-null ``pa.string()`` arrays of length n;
    ``accessions``: ``pa.string()`` with nulls where unknown; ``positions``: int64 array (n,) locating
    each row, turned into a line number only when an error is reported (tabular: the 1-based data row;
    FASTA: the header's line; Stockholm: the character offset where the alignment starts).
    """

    source: Path
    kind: str  # "tsv", "fasta" or "stockholm": how positions are described
    names: pa.Array
    family_ids: pa.Array
    accessions: pa.Array
    sequences: pa.Array
    positions: np.ndarray
    split: str | None = None

    def __len__(self) -> int:
        return len(self.names)

    def lines(self, rows: np.ndarray | None = None) -> np.ndarray:
        """1-based line numbers of ``rows`` (default: all rows), found in one pass over the file."""
        positions = self.positions if rows is None else self.positions[rows]
        if self.kind == "fasta":
            return positions
        if self.kind == "stockholm":
            return lines_at(self.source, positions)
        return _data_row_lines(self.source, positions)

    def location(self, i: int) -> str:
        """Human-readable location of row ``i`` (file, record, line)."""
        line = int(self.lines(np.array([i]))[0])
        return self._describe(self.names[i].as_py(), self.family_ids[i].as_py(), line)

    def _describe(self, name: str, family: str, line: int) -> str:
        if self.kind == "stockholm":
            return f"{where(self.source, record=family, line=line)} (alignment start), sequence {name!r}"
        if self.kind == "fasta":
            return where(self.source, record=name, line=line)
        return f"{where(self.source, line=line)} (sequence {name!r})"

    def records(self) -> Iterator[Record]:
        columns = [a.to_pylist() for a in (self.names, self.family_ids, self.accessions, self.sequences)]
        for name, family, accession, sequence, line in zip(*columns, self.lines().tolist()):
            yield Record(name, family, accession, sequence, self._describe(name, family, line), self.split)


def open_text(path: Path) -> io.TextIOBase:
    """Open a text file, gunzipping by magic bytes; latin-1 never fails to decode (Pfam-A.seed is latin-1)."""
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    if gzipped:
        return gzip.open(path, "rt", encoding="latin-1", newline=None)
    return open(path, encoding="latin-1", newline=None)


def read_head(path: Path, size: int = 4096) -> str:
    """First ``size`` characters of a (possibly gzipped) file, for format detection."""
    with open_text(path) as fh:
        return fh.read(size)


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
    from protlc.data import fasta, stockholm, tabular

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


# --------------------------------------------------------------------------- cleaning and validation

_LETTERS = ALPHABET.letters.encode()
_VALID_BYTE = np.zeros(256, dtype=bool)
_VALID_BYTE[np.frombuffer(_LETTERS, dtype=np.uint8)] = True


def _string_buffers(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets (n+1,) int64 rebased to 0, value bytes uint8)`` of a string array, without copies where possible."""
    array = array.cast(pa.large_string()) if array.type != pa.large_string() else array
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset : array.offset + len(array) + 1]
    data = array.buffers()[2]
    values = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    return offsets - offsets[0], values[offsets[0] : offsets[-1]]


def clean_sequences(sequences: pa.Array) -> pa.Array:
    """Vectorised :meth:`Alphabet.clean`: strip surrounding whitespace and one trailing ``*``."""
    sequences = pc.utf8_trim_whitespace(sequences)
    offsets, values = _string_buffers(sequences)
    ends = offsets[1:]
    stop = np.zeros(len(sequences), dtype=bool)
    nonempty = ends > offsets[:-1]
    stop[nonempty] = values[ends[nonempty] - 1] == ord("*")
    if stop.any():
        sequences = pc.if_else(pa.array(stop), pc.utf8_slice_codeunits(sequences, 0, -1), sequences)
    return sequences


def suspect_rows(sequences: pa.Array) -> np.ndarray:
    """Indices of rows that may fail :meth:`Alphabet.problem` (a superset; problem() is the judge).

    Flags empty rows, rows with a byte outside the alphabet, and rows of >= 30 letters that are all
    nucleotide letters.
    """
    offsets, values = _string_buffers(sequences)
    suspect = np.diff(offsets) == 0
    if values.tobytes().translate(None, _LETTERS):  # some byte is outside the alphabet: find its rows
        bad = np.flatnonzero(~_VALID_BYTE[values])
        suspect[np.searchsorted(offsets, bad, side="right") - 1] = True
    # RE2 gives up at the first non-nucleotide letter, so this costs a few bytes per protein
    suspect |= pc.match_substring_regex(sequences, "^[ACGTUN]{30,}$").to_numpy(zero_copy_only=False)
    return np.flatnonzero(suspect)


def check_block(block: RecordBlock) -> None:
    """The one validation step every record passes: names, families and sequences.

    Raises:
        InputError: at the first bad row, naming file + record/line and the problem.
    """
    for array, what in ((block.names, "sequence name"), (block.family_ids, "family id")):
        empty = pc.fill_null(pc.or_kleene(pc.is_null(array), pc.equal(pc.utf8_length(array), 0)), True)
        if pc.any(empty).as_py():
            i = int(np.flatnonzero(empty.to_numpy(zero_copy_only=False))[0])
            raise InputError(f"{block.location(i)}: empty {what}")
    for i in suspect_rows(block.sequences):
        problem = ALPHABET.problem(block.sequences[int(i)].as_py())
        if problem is not None:
            raise InputError(f"{block.location(int(i))}: {problem}")


# --------------------------------------------------------------------------- error locations


def lines_at(path: Path, offsets: np.ndarray, chunk_chars: int = 1 << 22) -> np.ndarray:
    """1-based line numbers of character offsets in a (possibly gzipped) text file, in one pass."""
    offsets = np.asarray(offsets, dtype=np.int64)
    wanted = np.unique(offsets)
    found = np.ones(wanted.size, dtype=np.int64)
    line, seen, k = 1, 0, 0
    with open_text(path) as handle:
        while k < wanted.size:
            chunk = handle.read(chunk_chars)
            if not chunk:
                found[k:] = line
                break
            start = 0
            while k < wanted.size and wanted[k] <= seen + len(chunk):
                stop = int(wanted[k]) - seen
                line += chunk.count("\n", start, stop)
                found[k], start = line, stop
                k += 1
            line += chunk.count("\n", start)
            seen += len(chunk)
    return found[np.searchsorted(wanted, offsets)]


def _data_row_lines(path: Path, rows: np.ndarray) -> np.ndarray:
    """Line numbers of 1-based data rows of a table, skipping blank lines as the CSV parser does."""
    rows = np.asarray(rows, dtype=np.int64)
    last = int(rows.max()) if rows.size else 0
    nonblank = []  # line numbers of the non-blank lines: [0] is the header, [k] is data row k
    with open_text(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            if line.strip():
                nonblank.append(line_no)
                if len(nonblank) > last:
                    break
    return np.asarray(nonblank, dtype=np.int64)[np.minimum(rows, len(nonblank) - 1)]
