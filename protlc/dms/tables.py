"""Load a DMS table (CSV, TSV or Parquet) and its wild type into one canonical DataFrame.

Canonical columns (constants below): ``mutant`` (the original string; derived in ProteinGym notation when
the table only has sequences), ``mutated_sequence``, ``num_mutations`` (residues that differ from the
wild type), ``positions`` (tuple of their 0-based indices), ``score`` (float; absent for libraries
loaded with ``require_score=False``). Rows keep their input order and index ``0..n-1``, which is the
numbering of nn4dms split files (with ``skip_invalid``, the input row numbers of the rows kept).
``DataFrame.attrs`` records ``wild_type``, ``notation``, ``offset``, ``source``, ``rows`` (data rows of
the file) and ``rejects`` (the rows left out).

nn4dms tables number residues 0-based plus the data set's ``wt_offset`` (Pab1: 126). Three easy ways:
``--offset 126`` with any ``--wt``; or leave out ``--wt`` for a table kept in the nn4dms layout
(``<root>/pab1/pab1.tsv`` next to ``<root>/wt_sequences.tsv``), which supplies both the wild type and
its offset; or :func:`read_nn4dms_wild_type`. A wrong offset fails with a hint naming the right one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from protlc.alphabet import ALPHABET
from protlc.data import tables
from protlc.data.chunks import is_fasta
from protlc.data.fasta import iter_fasta
from protlc.data.records import read_head
from protlc.dms.mutations import (
    MUTANT_LETTERS,
    WILD_TYPE_LETTERS,
    apply_many,
    detect_notation,
    format_mutant,
    Substitution,
    resolve_notation,
    suggest_offset,
)
from protlc.dms.rejects import Reject
from protlc.errors import InputError

MUTANT = "mutant"
MUTATED_SEQUENCE = "mutated_sequence"
NUM_MUTATIONS = "num_mutations"
POSITIONS = "positions"
SCORE = "score"
CANONICAL_COLUMNS = (MUTANT, MUTATED_SEQUENCE, NUM_MUTATIONS, POSITIONS, SCORE)

MUTANT_COLUMN_CANDIDATES = ("mutant", "variant", "mutation", "mutations")
SEQUENCE_COLUMN_CANDIDATES = ("mutated_sequence",)
SCORE_COLUMN_CANDIDATES = ("score", "DMS_score", "fitness")
NN4DMS_WT_TABLE = "wt_sequences.tsv"
SKIP_HINT = " (use --skip-invalid to set such rows aside)"
_ALLOWED_BYTES = np.zeros(256, dtype=bool)
_ALLOWED_BYTES[[ord(c) for c in WILD_TYPE_LETTERS | MUTANT_LETTERS]] = True


def read_wild_type(seq_or_fasta: str | Path) -> str:
    """The wild-type sequence from a FASTA file (exactly one record), a text file holding only the sequence,
    or a literal sequence string.

    Raises:
        InputError: unreadable FASTA, not exactly one record, or invalid residues.
    """
    text = str(seq_or_fasta).strip()
    path = Path(text)
    if _is_dir(path):
        raise InputError(f"--wt {path}: is a directory, not a wild-type sequence or FASTA file")
    if _is_file(path) and not is_fasta(path):  # a plain text file holding just the sequence
        sequence, origin = ALPHABET.clean("".join(read_head(path, size=1 << 20).split())), str(path)
    elif _is_file(path):
        records = list(iter_fasta(path))
        if len(records) != 1:
            raise InputError(f"{path}: the wild-type FASTA must hold exactly one record, found {len(records)}")
        name = records[0].header.split()[0] if records[0].header else ""
        sequence, origin = ALPHABET.clean(records[0].sequence), f"{path}, record {name!r}"
    else:
        sequence, origin = ALPHABET.clean(text), "--wt"
    problem = ALPHABET.problem(sequence)
    if problem:
        hint = "" if origin != "--wt" else f" ({text[:40]!r} is neither an existing FASTA file nor a protein sequence)"
        raise InputError(f"{origin}: wild type: {problem}{hint}")
    return sequence


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a long literal sequence is "File name too long"
        return False


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def read_nn4dms_wild_type(wt_table: str | Path, dataset: str) -> tuple[str, int]:
    """``(wild type, wt_offset)`` of ``dataset`` (e.g. ``pab1``) from nn4dms' ``wt_sequences.tsv``.

    Raises:
        InputError: unreadable table or unknown data set.
    """
    table = _read(Path(wt_table))
    missing = {"dataset", "wt_offset", "wt_aa"} - set(table.columns)
    if missing:
        raise InputError(f"{wt_table}: not an nn4dms wild-type table (missing columns {sorted(missing)})")
    rows = table[table["dataset"] == dataset]
    if rows.empty:
        raise InputError(f"{wt_table}: no data set {dataset!r} (have {', '.join(map(str, table['dataset']))})")
    return read_wild_type(rows["wt_aa"].iloc[0]), int(rows["wt_offset"].iloc[0])


def locate_nn4dms_wild_type(table_path: str | Path) -> tuple[str, int] | None:
    """Wild type and offset for ``<root>/<name>/<name>.tsv`` when ``<root>/wt_sequences.tsv`` lists ``name``."""
    table_path = Path(table_path)
    wt_table = table_path.parent.parent / NN4DMS_WT_TABLE
    if not wt_table.is_file():
        return None
    try:
        return read_nn4dms_wild_type(wt_table, table_path.parent.name)
    except InputError:
        return None


def _read(path: Path) -> pd.DataFrame:
    if _is_dir(path):
        raise InputError(f"{path}: is a directory, not a table file")
    if not _is_file(path):
        raise InputError(f"{path}: no such file")
    if not tables.is_parquet(path) and tables.suffix(path) not in tables.TEXT_SUFFIXES:
        kind = tables.suffix(path)
        raise InputError(f"{path}: unknown table format {kind or '(no extension)'!r}; use .csv, .tsv or .parquet")
    return tables.read_frame(path)


def row_location(path: str | Path, row: int) -> str:
    """``file, row 5 (line 7)``: 0-based data row (as in split files) and, for text tables, the line."""
    path = Path(path)
    is_text = not tables.is_parquet(path)
    return f"{path}, row {row}" + (f" (line {row + 2})" if is_text else "")


def _pick(columns, requested: str | None, candidates: tuple[str, ...], what: str, path: Path,
          required: bool) -> str | None:
    if requested is not None:
        if requested not in columns:
            raise InputError(f"{path}: no {what} column {requested!r} (columns: {', '.join(map(str, columns))})")
        return requested
    found = next((c for c in candidates if c in columns), None)
    if found is None and required:
        raise InputError(f"{path}: no {what} column (looked for {', '.join(candidates)}; columns: "
                         f"{', '.join(map(str, columns))}); name it with --{what.replace(' ', '-')}-column")
    return found


def sequence_matrix(sequences: list[str], length: int) -> np.ndarray:
    """``(n, length)`` uint8 matrix of equal-length ASCII sequences."""
    return np.frombuffer("".join(sequences).encode("ascii"), dtype=np.uint8).reshape(len(sequences), length)


def _sequence_problems(sequences: list, wt: str, column: str, stop_at_first: bool = False) -> list[Reject]:
    """A reject (row, sequence, sequence, reason) per full sequence of the wrong length or with a letter
    outside the alphabet (the standard amino acids, the ambiguity letters of the wild type, ``*``)."""
    problems: list[Reject] = []
    for row, seq in enumerate(sequences):
        if not isinstance(seq, str) or len(seq) != len(wt):
            size = len(seq) if isinstance(seq, str) else 0
            problems.append(Reject(row, str(seq), str(seq)[:60], f"{column} has length {size} but the wild type has "
                                   f"{len(wt)}; only substitution variants are supported"))
            continue
        encoded = np.frombuffer(seq.encode("ascii", "replace"), dtype=np.uint8)
        bad = np.flatnonzero(~_ALLOWED_BYTES[encoded]) if len(encoded) == len(wt) else np.array([0])
        if len(bad):
            col = int(bad[0])
            problems.append(Reject(row, seq, seq[:60], f"{column} has an invalid residue {seq[col]!r} at position "
                                                       f"{col + 1}"))
        if problems and stop_at_first:
            break
    return problems


def _mutation_columns(sequences: list[str], wt: str) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    diff = sequence_matrix(sequences, len(wt)) != np.frombuffer(wt.encode("ascii"), dtype=np.uint8)
    counts = diff.sum(axis=1)
    _, cols = np.nonzero(diff)
    positions = [tuple(p.tolist()) for p in np.split(cols, np.cumsum(counts)[:-1])] if len(sequences) else []
    return counts.astype(np.int64), positions


def _mutant_problems(mutants: list, wt: str, notation: str, offset: int, path: Path, skip_invalid: bool
                     ) -> tuple[list, list[Reject]]:
    """Mutated sequences (None for a bad row) and a reject per bad mutant; without ``skip_invalid`` the first
    bad mutant is raised, with the ``--offset`` at which the wild-type letters would all match."""
    sequences, errors = apply_many(wt, mutants, notation, offset, stop_at_first_error=not skip_invalid)
    if errors and not skip_invalid:
        row, token, message = errors[0]
        hint = ""
        if "wild-type letter" in message or "beyond" in message or "before the first" in message:
            fit = suggest_offset(wt, mutants, notation)
            if fit is not None and fit != offset:
                hint = f"; the wild-type letters all match with --offset {fit}"
        raise InputError(f"{row_location(path, row)}: mutant {token!r}: {message} "
                         f"[notation {notation}, offset {offset}]{hint}{SKIP_HINT}")
    return sequences, [Reject(row, str(mutants[row]), token, message) for row, token, message in errors]


def load_dms_table(path: str | Path, wt: str | Path | None = None, notation: str = "auto",
                   offset: int | None = None, score_column: str | None = None,
                   mutant_column: str | None = None, require_score: bool = True,
                   sequence_column: str | None = None, skip_invalid: bool = False) -> pd.DataFrame:
    """Read a DMS table and return the canonical DataFrame described in the module docstring.

    Args:
        wt: FASTA path or literal sequence; None only for a table in the nn4dms layout.
        notation: ``auto`` (see :func:`protlc.dms.mutations.detect_notation`), ``proteingym``, ``nn4dms``, ``esm``.
        offset: number of the wild type's first residue in the mutant strings; None = notation default
            (for nn4dms, the layout's ``wt_offset`` when the wild type matches it).
        score_column: None picks the first of ``score``, ``DMS_score``, ``fitness``.
        mutant_column: None picks the first of ``mutant``, ``variant``, ``mutation``, ``mutations``;
            without one, a full-sequence column is required.
        sequence_column: the column of full variant sequences (MAVE-NN ``x``, FLIP ``sequence``); None picks
            ``mutated_sequence`` if there is one. With a mutant column too, each sequence must equal its
            mutant applied to the wild type.
        skip_invalid: drop bad rows (bad mutant or sequence, disagreeing sequence, missing or non-finite
            score) instead of failing on the first; the frame keeps the input row numbers as its index and
            ``attrs["rejects"]`` lists a :class:`~protlc.dms.rejects.Reject` per dropped row.

    Raises:
        InputError: unreadable or empty table, missing columns, a bad mutant (file, row and token), a
            sequence that disagrees with its mutant, has the wrong length or a letter outside the
            alphabet, a non-numeric score (without ``skip_invalid``); no valid row (with it).
    """
    path = Path(path)
    located = locate_nn4dms_wild_type(path)
    if wt is None:
        if located is None:
            raise InputError(f"{path}: give the wild-type sequence (--wt SEQUENCE or FASTA)")
        wild_type = located[0]
    else:
        wild_type = read_wild_type(wt)
    table = _read(path)
    if table.empty:
        raise InputError(f"{path}: the table has no rows")
    mutant_col = _pick(table.columns, mutant_column, MUTANT_COLUMN_CANDIDATES, "mutant", path, required=False)
    sequence_col = _pick(table.columns, sequence_column, SEQUENCE_COLUMN_CANDIDATES, "sequence", path,
                         required=False)
    if mutant_col is None and sequence_col is None:
        raise InputError(f"{path}: no mutant column ({', '.join(MUTANT_COLUMN_CANDIDATES)}) and no mutated_sequence "
                         f"column (columns: {', '.join(map(str, table.columns))}); name it with --mutant-column "
                         "or --sequence-column")
    score_col = _pick(table.columns, score_column, SCORE_COLUMN_CANDIDATES, "score", path, required=require_score)

    given_sequences = table[sequence_col].tolist() if sequence_col else None
    if mutant_col is not None:
        mutants = table[mutant_col].tolist()
        if notation == "auto":
            try:
                notation = detect_notation(mutants)
            except InputError as err:
                raise InputError(f"{path}: {err}") from None
        if offset is None and notation == "nn4dms" and located is not None and located[0] == wild_type:
            offset = located[1]
        notation, offset = resolve_notation(notation, offset)
        sequences, rejects = _mutant_problems(mutants, wild_type, notation, offset, path, skip_invalid)
        if given_sequences is not None:
            for row, (ours, theirs) in enumerate(zip(sequences, given_sequences)):
                if ours is not None and ours != theirs:
                    reason = (f"{sequence_col} disagrees with mutant {mutants[row]!r} applied to the wild type "
                              "(wrong --wt or --offset?)")
                    if not skip_invalid:
                        raise InputError(f"{row_location(path, row)}: {reason}{SKIP_HINT}")
                    rejects.append(Reject(row, str(mutants[row]), str(theirs)[:60], reason))
    else:
        notation, offset = resolve_notation("proteingym" if notation == "auto" else notation, offset)
        sequences = [s.strip() if isinstance(s, str) else s for s in given_sequences]
        rejects = _sequence_problems(sequences, wild_type, sequence_col, stop_at_first=not skip_invalid)
        if rejects and not skip_invalid:
            raise InputError(f"{row_location(path, rejects[0].row)}: {rejects[0].reason}{SKIP_HINT}")
        mutants = None
    scores = None
    if score_col is not None:
        scores, score_rejects = _scores(table[score_col], path, score_col, mutants or sequences, skip_invalid)
        rejects += score_rejects
    rejected = {}
    for reject in sorted(rejects):  # one reject per row: the first problem found in it
        rejected.setdefault(reject.row, reject)
    keep = np.setdiff1d(np.arange(len(table)), np.fromiter(rejected, dtype=np.int64, count=len(rejected)))
    if not len(keep):
        raise InputError(f"{path}: none of its {len(table):,} rows is valid (first: {row_location(path, 0)}: "
                         f"{rejected[0].reason})")
    sequences = [sequences[i] for i in keep]
    counts, positions = _mutation_columns(sequences, wild_type)
    if mutant_col is None:
        mutants = [format_mutant([Substitution(p, wild_type[p], s[p]) for p in pos], notation, offset)
                   for s, pos in zip(sequences, positions)]
    else:
        mutants = [mutants[i] for i in keep]
    frame = pd.DataFrame({MUTANT: mutants, MUTATED_SEQUENCE: sequences, NUM_MUTATIONS: counts,
                          POSITIONS: positions}, index=pd.Index(keep, dtype=np.int64) if rejected else None)
    if scores is not None:
        frame[SCORE] = scores[keep]
    frame.attrs.update(wild_type=wild_type, notation=notation, offset=offset, source=str(path), rows=len(table),
                       rejects=list(rejected.values()))
    return frame


def _scores(column: pd.Series, path: Path, name: str, variants: list, skip_invalid: bool
            ) -> tuple[np.ndarray, list[Reject]]:
    """Scores as float64 and a reject per missing or non-finite one (raised without ``skip_invalid``)."""
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad) and not skip_invalid:
        row = int(bad[0])
        raise InputError(f"{row_location(path, row)}: score column {name!r} holds {column.iloc[row]!r}, not a "
                         f"finite number ({len(bad)} such rows; drop or fill them, or use --skip-invalid)")
    return values, [Reject(int(row), str(variants[row]), str(column.iloc[row]),
                           f"score column {name!r} holds {column.iloc[row]!r}, not a finite number") for row in bad]
