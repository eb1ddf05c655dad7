"""Mutant libraries for scoring: where the rows come from, how their mutants are read, which rows are invalid.

A library is a CSV/TSV/Parquet table read in chunks (a mutant column in any notation of
:mod:`protlc.dms.mutations`, or a full-sequence column), or a generated one (``--saturation``,
``--combinatorial``). :func:`choose_applier` decides the notation and numbering on the first chunk and
:func:`check_agreement` refuses a library numbered for another offset or protein; :func:`check_chunk`
turns each chunk into the ``(n, L)`` residue matrix of its valid rows (:mod:`protlc.dms.encoding`) and
the ``(row, token, reason)`` of its invalid ones.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from protlc.alphabet import ALPHABET
from protlc.data.tables import iter_table_chunks
from protlc.dms import mutations as mut
from protlc.dms.encoding import distinct_rows, encode_mutants
from protlc.dms.tables import (
    MUTANT,
    MUTANT_COLUMN_CANDIDATES,
    MUTATED_SEQUENCE,
    locate_nn4dms_wild_type,
    row_location,
    sequence_matrix,
)
from protlc.errors import ConfigError, InputError

MAX_MISMATCH = 0.2  # share of rows whose wild-type letters may disagree (typos) before a library is refused
MAX_VARIANTS = 10_000_000  # --combinatorial libraries beyond this need --max-variants


@dataclass
class Library:
    """Where rows come from: the chunks, which column holds mutants or sequences, how to name a row;
    ``check_column``: full sequences that must equal the mutants applied to the wild type."""

    chunks: Iterator[pd.DataFrame]
    column: str
    is_sequence: bool
    name: str
    total: int | None
    check_column: str | None = None

    def where(self, row: int) -> str:
        path = Path(self.name)
        return row_location(path, row) if path.suffix else f"{self.name}, row {row}"


def _generated(mutants: Iterator[str], chunk_size: int) -> Iterator[pd.DataFrame]:
    start = 0
    while batch := list(itertools.islice(mutants, chunk_size)):
        yield pd.DataFrame({MUTANT: batch}, index=pd.RangeIndex(start, start + len(batch)))
        start += len(batch)


def open_library(library, saturation: bool, combinatorial: str | None, wt: str, offset: int, chunk_size: int,
                  mutant_column: str | None, sequence_column: str | None = None,
                  max_variants: int = MAX_VARIANTS) -> Library:
    sources = sum([library is not None, saturation, combinatorial is not None])
    if sources != 1:
        raise ConfigError("give exactly one library: a LIBRARY file, --saturation or --combinatorial SPEC")
    if saturation:
        mutants = mut.saturation(wt, offset)
        return Library(_generated(iter(mutants), chunk_size), MUTANT, False, "--saturation library", len(mutants))
    if combinatorial is not None:
        total = mut.combinatorial_count(wt, combinatorial, offset)
        if total > max_variants:
            raise ConfigError(f"--combinatorial {combinatorial!r} makes {total:,} variants, more than --max-variants "
                              f"{max_variants:,}; pass --max-variants {total} to score them all")
        return Library(_generated(mut.combinatorial(wt, combinatorial, offset), chunk_size), MUTANT, False,
                        "--combinatorial library", total)
    path = Path(library)
    chunks = iter_table_chunks(path, chunk_size)
    first = next(chunks, None)
    if first is None or first.empty:
        raise InputError(f"{path}: the library has no rows")
    columns = [str(c) for c in first.columns]
    for given, what in ((mutant_column, "mutant"), (sequence_column, "sequence")):
        if given is not None and given not in columns:
            raise InputError(f"{path}: no {what} column {given!r} (columns: {', '.join(columns)})")
    column = mutant_column or next((c for c in MUTANT_COLUMN_CANDIDATES if c in columns), None)
    sequences = sequence_column or (MUTATED_SEQUENCE if MUTATED_SEQUENCE in columns else None)
    if column is None and sequences is None:
        raise InputError(f"{path}: no mutant column ({', '.join(MUTANT_COLUMN_CANDIDATES)}) and no "
                         f"{MUTATED_SEQUENCE} column (columns: {', '.join(columns)}); name it with --mutant-column "
                         "or --sequence-column")
    total = pq.ParquetFile(path).metadata.num_rows if path.suffix.lower() == ".parquet" else None
    return Library(itertools.chain([first], chunks), column or sequences, column is None, str(path), total,
                    sequences if column is not None else None)


def _sequence_problem(sequence, length: int | None, column: str) -> str | None:
    if not isinstance(sequence, str) or not sequence:
        return f"empty {column}"
    problem = ALPHABET.problem(sequence, allow_stop=True)
    if problem is None and length is not None and len(sequence) != length:
        problem = f"sequence has {len(sequence)} residues but the model takes {length} (the wild type's length)"
    return problem


def check_chunk(frame: pd.DataFrame, library: Library, applier: mut.MutantApplier, length: int | None
                 ) -> tuple[np.ndarray | list[str], list[tuple[int, str, str]]]:
    """The valid rows' sequences and ``(chunk row, token, reason)`` of the invalid rows, in row order.

    Sequences come as an ``(n_valid, L)`` matrix of ASCII residues when they all have one length (always
    for mutants: substitutions keep the wild type's length), else as a list of strings.
    """
    values = frame[library.column].tolist()
    if library.is_sequence:
        values = [v.strip() if isinstance(v, str) else v for v in values]
        errors = [(i, str(v), p) for i, v in enumerate(values) if (p := _sequence_problem(v, length, library.column))]
        bad = {i for i, _, _ in errors}
        valid = [v for i, v in enumerate(values) if i not in bad]
        if valid and len({len(v) for v in valid}) == 1:
            return sequence_matrix(valid, len(valid[0])), errors
        return valid, errors
    matrix, errors = encode_mutants(applier, values)
    if library.check_column is not None:
        bad = {i for i, _, _ in errors}
        for i, given in enumerate(frame[library.check_column].tolist()):
            if i not in bad and (not isinstance(given, str) or given.strip().encode("ascii", "replace")
                                 != matrix[i].tobytes()):
                errors.append((i, str(values[i]), f"{library.check_column} disagrees with the mutant applied to "
                                                  "the wild type"))
        errors.sort()
    if errors:
        keep = np.ones(len(matrix), dtype=bool)
        keep[[i for i, _, _ in errors]] = False
        matrix = matrix[keep]
    return matrix, errors


def distinct(sequences: np.ndarray | list[str]) -> tuple[np.ndarray, np.ndarray | list[str]]:
    """``(codes, uniques)`` of a chunk's sequences (see :func:`protlc.dms.encoding.distinct_rows`)."""
    if isinstance(sequences, np.ndarray):
        return distinct_rows(sequences)
    codes, uniques = pd.factorize(pd.Series(sequences, dtype=object))
    return codes, list(uniques)


def raise_first(errors, frame: pd.DataFrame, library: Library, applier: mut.MutantApplier) -> None:
    row, token, reason = errors[0]
    hint = ""
    if not library.is_sequence and is_numbering_error(reason):
        fit = mut.suggest_offset(applier.wt, frame[library.column].tolist(), applier.notation)
        if fit is not None and fit != applier.offset:
            hint = f"; the wild-type letters all match with --offset {fit}"
    context = "" if library.is_sequence else f" [notation {applier.notation}, offset {applier.offset}]"
    raise InputError(f"{library.where(int(frame.index[row]))}: {'sequence' if library.is_sequence else 'mutant'} "
                     f"{token[:60]!r}: {reason}{context}{hint} (use --skip-invalid to set such rows aside)")


def library_offset(offset: int | None, notation: str, wild_type: str, library, loaded) -> int:
    """The numbering of the library's mutants: ``--offset``, else the notation's own.

    ProteinGym and ESM count from 1; nn4dms counts from 0 plus the data set's ``wt_offset``: the one next to
    the library (nn4dms layout), else the checkpoint's when it was trained on nn4dms strings of this wild
    type. How the training table was numbered never carries over to another notation.
    """
    if offset is not None or notation != "nn4dms":
        return mut.resolve_notation(notation, offset)[1]
    located = locate_nn4dms_wild_type(library) if library is not None else None
    if located is not None and located[0] == wild_type:
        return located[1]
    hp = loaded.hparams
    if hp.get("notation") == "nn4dms" and hp.get("wild_type") == wild_type and hp.get("offset") is not None:
        return int(hp["offset"])
    return mut.DEFAULT_OFFSETS["nn4dms"]


def choose_applier(mutants: list, notation: str, offset: int | None, wild_type: str, library, loaded,
                    name: str) -> mut.MutantApplier:
    """The reading of the library's mutant strings: its notation and that notation's numbering.

    ``auto`` detects the notation from the strings. Single substitutions without separators (``A126G``)
    may be ESM (1-based) or nn4dms (0-based + wt_offset): without ``--offset``, both readings are tried on
    the first chunk and the one whose wild-type letters agree best is kept (ties: 1-based).
    """
    if notation == "auto":
        try:
            notation = mut.detect_notation(mutants)
        except InputError as exc:
            raise InputError(f"{name}: {exc}") from None
        ambiguous = notation == "esm" and offset is None
        candidates = [mut.applier(wild_type, notation, library_offset(offset, notation, wild_type, library, loaded))]
        if ambiguous:
            nn4dms = library_offset(None, "nn4dms", wild_type, library, loaded)
            if nn4dms != candidates[0].offset:
                candidates.append(mut.applier(wild_type, "nn4dms", nn4dms))
        return min(candidates, key=lambda candidate: mismatches(candidate, mutants)) if len(candidates) > 1 else candidates[0]
    return mut.applier(wild_type, notation, library_offset(offset, notation, wild_type, library, loaded))


def mismatches(applier: mut.MutantApplier, mutants: list) -> int:
    """Rows whose wild-type letters or positions disagree with the wild type under this reading."""
    return sum(is_numbering_error(reason) for _, _, reason in encode_mutants(applier, mutants)[1])


def is_numbering_error(reason: str) -> bool:
    return "wild-type letter" in reason or "beyond" in reason or "before the first" in reason


def check_agreement(mismatched: int, examined: int, name: str, applier: mut.MutantApplier, sample: list) -> None:
    """Refuse a library whose mutants disagree with the wild type in more than :data:`MAX_MISMATCH` of rows.

    Raises:
        InputError: naming the offset at which the letters fit, or saying the library looks like another protein.
    """
    if examined == 0 or mismatched <= MAX_MISMATCH * examined:
        return
    share = f"{mismatched:,} of {examined:,} rows ({mismatched / examined:.1%})"
    fit = mut.suggest_offset(applier.wt, sample, applier.notation)
    if fit is not None and fit != applier.offset:
        why = f"the wild-type letters match with --offset {fit} (read as notation {applier.notation}, offset {applier.offset})"
    else:
        why = ("no offset makes them match: the library looks like another protein than the wild type "
               "(check --wt)")
    raise InputError(f"{name}: {share} name a wild-type letter or position that disagrees with the wild type; "
                     f"{why}. Nothing was scored")
