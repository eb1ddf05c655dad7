"""Read FASTA files whose headers name the family.

Header patterns (:data:`DEFAULT_FASTA_PATTERNS`) are tried in order; ``--fasta-family-regex``
replaces them with one pattern of the user's. Group ``family`` is required; ``name`` (default: the
first word of the header) and ``accession`` are optional. Sequences may span several lines; they get
:meth:`Alphabet.clean` and the common validation of :func:`protlc.data.records.check_block`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import pyarrow as pa

from protlc.data.records import ProgressCallback, RecordBlock, clean_sequences, open_text
from protlc.errors import ConfigError, InputError, where

#: Header patterns tried in order when no ``--fasta-family-regex`` is given. Group ``family`` is
#: required; ``name`` (default: first word of the header) and ``accession`` are optional.
DEFAULT_FASTA_PATTERNS = (
    # Pfam-A.fasta: ">A0A0D2WFW1_CAPO3/63-155 A0A0D2WFW1.1 PF00001.22;7tm_1;"
    r"^(?P<name>\S+)\s+\S+\s+(?P<accession>PF\d+(?:\.\d+)?);(?P<family>[^;\s]+);",
    # key=value anywhere after the name: ">P12345/1-80 family=Pkinase accession=PF00069.24"
    r"^(?P<name>\S+)(?=.*\s(?:family|family_id)=(?P<family>[^\s;|]+))(?:.*\saccession=(?P<accession>[^\s;|]+))?",
    # plain ">NAME FAMILY [anything]"
    r"^(?P<name>\S+)\s+(?P<family>\S+)",
)


def compile_fasta_patterns(patterns: tuple[str, ...] | str | None) -> list[re.Pattern]:
    """Compile header patterns; each needs a ``family`` group. Raises ConfigError."""
    if patterns is None:
        patterns = DEFAULT_FASTA_PATTERNS
    elif isinstance(patterns, str):
        patterns = (patterns,)
    compiled = []
    for text in patterns:
        try:
            pattern = re.compile(text)
        except re.error as exc:
            raise ConfigError(f"--fasta-family-regex {text!r}: not a valid regular expression ({exc})") from None
        if "family" not in pattern.groupindex:
            raise ConfigError(f"--fasta-family-regex {text!r}: needs a named group (?P<family>...)")
        compiled.append(pattern)
    return compiled


def _parse_header(header: str, patterns: list[re.Pattern]) -> tuple[str, str, str | None] | None:
    for pattern in patterns:
        match = pattern.search(header)
        if match and match.group("family"):
            groups = match.groupdict()
            name = groups.get("name") or (header.split() or [""])[0]
            return name, groups["family"], groups.get("accession")
    return None


class FastaEntry(NamedTuple):
    header: str  # the header line without '>' and surrounding whitespace
    sequence: str  # the sequence lines joined, whitespace removed (not yet cleaned or validated)
    line: int  # 1-based line number of the header


def iter_fasta(path: Path) -> Iterator[FastaEntry]:
    """The one FASTA parser: every command reads FASTA (optionally gzipped) through it.

    Raises:
        InputError: sequence data before the first '>' header (naming file and line).
    """
    header, header_line, parts = None, 0, []
    with open_text(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            if line.startswith(">"):
                if header is not None:
                    yield FastaEntry(header, "".join(parts), header_line)
                    parts.clear()
                header, header_line = line[1:].strip(), line_no
            elif header is None:
                if line.strip():
                    raise InputError(f"{where(path, line=line_no)}: sequence data before the first '>' header")
            else:
                parts.append("".join(line.split()))
    if header is not None:
        yield FastaEntry(header, "".join(parts), header_line)


def read_fasta(path: Path, patterns: tuple[str, ...] | str | None = None, on_progress: ProgressCallback | None = None,
               block_rows: int = 65536) -> Iterator[RecordBlock]:
    """Stream a FASTA file whose headers name the family (default patterns: :data:`DEFAULT_FASTA_PATTERNS`).

    Raises:
        InputError: a header without a family, or sequence data before the first header.
        ConfigError: a pattern that does not compile or lacks ``(?P<family>...)``.
    """
    compiled = compile_fasta_patterns(patterns)
    rows: list[tuple] = []

    def flush() -> RecordBlock:
        names, families, accessions, sequences, lines = zip(*rows)
        rows.clear()
        block = RecordBlock(
            path, "fasta", pa.array(names, pa.string()), pa.array(families, pa.string()),
            pa.array(accessions, pa.string()), clean_sequences(pa.array(sequences, pa.string())),
            np.asarray(lines, dtype=np.int64),
        )
        if on_progress:
            on_progress(len(block))
        return block

    for entry in iter_fasta(path):
        parsed = _parse_header(entry.header, compiled)
        if parsed is None:
            raise InputError(
                f"{where(path, line=entry.line)}: cannot find the family in header {entry.header[:80]!r}; "
                f"give --fasta-family-regex with a (?P<family>...) group"
            )
        rows.append((*parsed, entry.sequence, entry.line))
        if len(rows) >= block_rows:
            yield flush()
    if rows:
        yield flush()
