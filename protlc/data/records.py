"""Record types, text opening and the one validation step shared by every input reader.

Below the format readers (:mod:`protlc.data.fasta`, :mod:`protlc.data.stockholm`,
:mod:`protlc.data.tabular`) and the streamed tables of :mod:`protlc.data.chunks`: every sequence that
enters protlc, for training, prediction or scoring, is cleaned by :func:`clean_sequences` and judged
by :func:`invalid_rows` (a vectorised screen, then :meth:`Alphabet.problem` on the few suspects).
"""

from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from protlc.alphabet import ALPHABET
from protlc.errors import InputError, where

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


def is_gzipped(path: Path) -> bool:
    """True when the file starts with gzip's magic bytes (whatever its name)."""
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


class _GzipText:
    """A gunzipped text stream whose truncation or corruption (EOFError, BadGzipFile, zlib.error, raised
    in the middle of reading) is an InputError naming the file."""

    def __init__(self, path: Path):
        self.path = path
        self._handle = gzip.open(path, "rt", encoding="latin-1", newline=None)

    def _checked(self, read, *args):
        try:
            return read(*args)
        except (EOFError, OSError, zlib.error) as exc:
            raise InputError(f"{self.path}: cannot read the file (truncated or corrupt? {exc})") from None

    def read(self, *args) -> str:
        return self._checked(self._handle.read, *args)

    def readline(self, *args) -> str:
        return self._checked(self._handle.readline, *args)

    def __iter__(self) -> "_GzipText":
        return self

    def __next__(self) -> str:
        return self._checked(next, self._handle)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "_GzipText":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_text(path: Path) -> io.TextIOBase:
    """Open a text file, gunzipping by magic bytes; latin-1 never fails to decode (Pfam-A.seed is latin-1).

    A truncated or corrupt gzip file raises InputError (naming it) where reading fails.
    """
    if is_gzipped(path):
        return _GzipText(path)
    return open(path, encoding="latin-1", newline=None)


def read_head(path: Path, size: int = 4096) -> str:
    """First ``size`` characters of a (possibly gzipped) file, for format detection."""
    with open_text(path) as fh:
        return fh.read(size)


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


def first_problem(sequences: pa.Array) -> tuple[int, str] | None:
    """``(row, problem)`` of the first sequence that :meth:`Alphabet.problem` rejects, or None.

    The one sequence validator of protlc: a vectorised screen (:func:`suspect_rows`) picks the few rows
    that may be bad, and :meth:`Alphabet.problem` judges them.
    """
    for i in suspect_rows(sequences):
        problem = ALPHABET.problem(sequences[int(i)].as_py())
        if problem is not None:
            return int(i), problem
    return None


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
    bad = first_problem(block.sequences)
    if bad is not None:
        raise InputError(f"{block.location(bad[0])}: {bad[1]}")


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
