"""Stream Stockholm alignments (Pfam-A.seed style) through Biopython's parser.

Biopython's ``Bio.AlignIO`` Stockholm iterator keeps neither ``#=GF ID``/``#=GF AC`` nor line numbers,
accepts a record without its closing ``//``, and silently stops at an alignment without sequence
rows (dropping every family after it). So the file is first cut into single-alignment texts at the
``//`` lines (``str.find`` over buffered chunks: C speed, memory bounded by the largest alignment,
never by the number of families); each text gets its family id/accession and checks, then goes to
Biopython's parser on its own. Line numbers are only worked out when an error is reported.

Family id: ``#=GF ID``, or ``#=GF AC`` when the record has no ID (an error when it has neither).
Sequences: each alignment row with gaps (``-``, ``.``) removed and letters upper-cased (Pfam seeds
mark insert columns in lower case).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
from Bio.AlignIO.StockholmIO import StockholmIterator

from protlc.data.records import ProgressCallback, RecordBlock, lines_at, open_text
from protlc.errors import InputError, where

_CHUNK_CHARS = 1 << 22


def _terminator(buffer: str, start: int) -> int:
    """End offset of the first ``//`` line at or after ``start`` (a line holding only ``//``), or -1.

    ``str.find`` rather than a regular expression: it runs at memory speed over the whole file.
    """
    while True:
        hit = buffer.find("\n//", start)
        if hit < 0:
            return -1
        end = buffer.find("\n", hit + 3)
        if end < 0:  # the line may go on in the next chunk
            return -1 if buffer[hit + 3 :].strip() else len(buffer)
        if not buffer[hit + 3 : end].strip():
            return end
        start = hit + 3


def _skip_blank(buffer: str, pos: int, end: int) -> int:
    while pos < end and buffer[pos] in " \t\r\n":
        pos += 1
    return pos


def alignment_texts(handle, chunk_chars: int = _CHUNK_CHARS) -> Iterator[tuple[int, str, bool]]:
    """Cut a Stockholm stream into single alignments.

    Yields:
        ``(offset, text, terminated)``: the 0-based character offset of the alignment's first line in
        the stream (see :func:`protlc.data.records.lines_at`), its text (from the header up to and
        including ``//``) and whether ``//`` closed it.
    """
    buffer, pos, search_from, dropped, at_eof = "\n", 1, 0, 0, False  # buffer[0] is a sentinel newline
    while True:
        end = _terminator(buffer, search_from)
        if end < 0 or (end == len(buffer) and not at_eof):
            more = handle.read(chunk_chars)
            if more:
                kept = buffer[pos:]  # an unfinished alignment; search again from its last line on
                dropped += pos - 1
                buffer, search_from, pos = "\n" + kept + more, kept.rfind("\n") + 1, 1
                continue
            at_eof = True
            if end < 0:
                start = _skip_blank(buffer, pos, len(buffer))
                if start < len(buffer):
                    yield dropped + start - 1, buffer[start:], False
                return
        start = _skip_blank(buffer, pos, end)
        yield dropped + start - 1, buffer[start:end], True
        pos = search_from = end


def _gf(text: str, feature: str) -> str | None:
    """Value of the first ``#=GF <feature>`` line of an alignment text."""
    hit = text.find(f"\n#=GF {feature} ")
    if hit < 0:
        return None
    end = text.find("\n", hit + 1)
    return text[hit + 9 : end if end >= 0 else None].strip() or None


class _CountingReader:
    """Line-counting handle, used only to locate a parse error after Biopython has raised one."""

    def __init__(self, text: str):
        self._readline = io.StringIO(text).readline
        self.line = 0

    def readline(self) -> str:
        self.line += 1
        return self._readline()


class _ParseProblem(Exception):
    """A bad alignment: ``message``, found ``delta`` lines below the alignment's first line."""

    def __init__(self, message: str, delta: int = 0):
        super().__init__(message)
        self.message, self.delta = message, delta


def _biopython_problem(exc: Exception, text: str) -> _ParseProblem:
    """Rephrase a Biopython parse error, locating the row or line it concerns."""
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "different lengths" in message:
        iterator = StockholmIterator(io.StringIO(text))
        try:
            next(iterator)
        except ValueError:
            rows = getattr(iterator, "sequences", None) or {}
            first_name, first = next(iter(rows.items()), ("", ""))
            for name, row in rows.items():
                if len(row) != len(first):
                    return _ParseProblem(f"alignment rows have unequal lengths: {first_name!r} has {len(first)} columns, "
                                         f"{name!r} has {len(row)} (cut-off block, or the name occurs twice)")
    if isinstance(exc, UnicodeError):  # Biopython's Seq takes ASCII only
        for delta, line in enumerate(text.splitlines()):
            if not line.startswith("#") and not line.isascii():
                name, _, row = line.partition(" ")
                char = next(c for c in row if not c.isascii())
                return _ParseProblem(f"sequence {name!r}: invalid residue {char!r} (not an amino-acid letter)", delta)
    if isinstance(exc, AssertionError):
        message = "a sequence row follows '//' without a new '# STOCKHOLM 1.0' header"
    reader = _CountingReader(text)
    try:
        next(StockholmIterator(reader))
    except Exception:  # the same error again; we only want the line it happened on
        pass
    lines = text.splitlines()
    shown = lines[reader.line - 1].strip()[:60] if 0 < reader.line <= len(lines) else ""
    return _ParseProblem(f"cannot parse {shown!r} ({message})", reader.line - 1)


def _parse_one(path: Path, offset: int, text: str, terminated: bool) -> tuple[str, str | None, dict[str, str]]:
    """Parse one alignment text; returns ``(family_id, accession, {row name: aligned row})``. Raises InputError."""
    accession = _gf(text, "AC")
    family = _gf(text, "ID") or accession
    try:
        return family, accession, _parse_checked(text, family, terminated)
    except _ParseProblem as problem:
        line = int(lines_at(path, [offset])[0]) + problem.delta
        record = where(path, record=family, line=line) if family else where(path, line=line)
        raise InputError(f"{record}: {problem.message}") from None


def _parse_checked(text: str, family: str | None, terminated: bool) -> dict[str, str]:
    if not text.startswith("# STOCKHOLM"):
        raise _ParseProblem(f"expected '# STOCKHOLM 1.0', found {text.splitlines()[0][:60]!r}")
    if not terminated:
        raise _ParseProblem("the alignment has no closing '//' before the end of the file (truncated file?)")
    stream = io.StringIO(text)
    iterator = StockholmIterator(stream)
    try:
        alignment = next(iterator)
    except StopIteration:
        raise _ParseProblem("the alignment has no sequence rows") from None
    except (ValueError, AssertionError, TypeError) as exc:  # Biopython's parse errors
        raise _biopython_problem(exc, text) from None
    if stream.tell() < len(text):  # Biopython stopped at a second header: this alignment lacks its '//'
        raise _ParseProblem("a new '# STOCKHOLM 1.0' header before the closing '//' of this alignment",
                            text.count("\n", 0, text.find("\n# STOCKHOLM")) + 1)
    if family is None:
        raise _ParseProblem("the alignment has neither '#=GF ID' nor '#=GF AC'; add '#=GF ID <family>'")
    rows = getattr(iterator, "sequences", None)  # the parser's own row strings: no Seq round trip
    if not isinstance(rows, dict) or len(rows) != len(alignment):
        rows = {record.id: str(record.seq) for record in alignment}
    return rows


def _degap_upper(rows: list[str]) -> pa.Array:
    """Aligned rows -> unaligned upper-case sequences, in bulk (one bytes pass beats per-row str.replace).

    Biopython has already turned ``.`` gaps into ``-`` and rows hold no newline, so ASCII rows are
    joined with newlines, cleaned as one byte string, and cut again where the newlines were.
    """
    joined = "\n".join(rows)
    if not joined.isascii():  # one byte per character is what the offsets below assume
        return pa.array([row.replace("-", "").upper() for row in rows], pa.string())
    data = joined.encode("ascii").translate(None, b"-").upper()
    breaks = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))  # len(rows) - 1 of them
    offsets = np.empty(len(rows) + 1, dtype=np.int64)
    offsets[0], offsets[-1] = 0, len(data) - breaks.size
    offsets[1:-1] = breaks - np.arange(breaks.size)
    values = data.translate(None, b"\n")
    return pa.LargeStringArray.from_buffers(len(rows), pa.py_buffer(offsets), pa.py_buffer(values)).cast(pa.string())


def read_stockholm(path: Path, on_progress: ProgressCallback | None = None, block_rows: int = 65536) -> Iterator[RecordBlock]:
    """Stream one Stockholm file (gzipped or not) as record blocks.

    Raises:
        InputError: not Stockholm, missing ``//``, unequal row lengths, an alignment without rows or
            without ``#=GF ID``/``AC``, or any other parse error, naming file, family and line.
    """
    names: list[str] = []
    families: list[str] = []
    accessions: list[str | None] = []
    rows: list[str] = []
    starts: list[int] = []

    def flush() -> RecordBlock:
        block = RecordBlock(
            path, "stockholm", pa.array(names, pa.string()), pa.array(families, pa.string()),
            pa.array(accessions, pa.string()), _degap_upper(rows), np.asarray(starts, dtype=np.int64),
        )
        for buffer in (names, families, accessions, rows, starts):
            buffer.clear()
        return block

    with open_text(path) as handle:
        for offset, text, terminated in alignment_texts(handle):
            family, accession, aligned = _parse_one(path, offset, text, terminated)
            n = len(aligned)
            names.extend(aligned)
            rows.extend(aligned.values())
            families.extend([family] * n)
            accessions.extend([accession] * n)
            starts.extend([offset] * n)
            if on_progress:
                on_progress(n)
            if len(rows) >= block_rows:
                yield flush()
    if rows:
        yield flush()
