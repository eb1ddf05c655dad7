"""Streaming fitness scoring of mutant libraries: chunked read -> apply -> dedupe -> batch -> predict -> chunked write.

A library is a CSV/TSV/Parquet table with a mutant column (any notation of :mod:`protlc.dms.mutations`)
or a ``mutated_sequence`` column, or is generated: every single substitution of the wild type
(``saturation``) or a combinatorial spec. Memory stays constant in the library's size: one chunk
(``chunk_size`` rows) is read, its mutants applied and checked, identical sequences collapsed (each
distinct sequence is predicted once per chunk), the distinct sequences predicted in length-bucketed
batches, and the chunk's rows written with a ``fitness`` column (and, for a model trained with
``--init``, ``predicted_family`` and ``family_probability``) before the next chunk is read. Rows keep
their input order; output and rejects files appear atomically when everything succeeded.

Several devices: ``devices=N`` starts N worker processes (spawned), each holding the model on its own
device (``cuda:0..N-1`` for ``device="cuda"``, CPU threads split evenly for ``device="cpu"``); the main
process reads, checks and writes, and hands each chunk's distinct sequences to a worker, keeping at
most two chunks per worker in flight and writing results back in input order. One process (the
default) needs no pool.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from protlc.alphabet import ALPHABET
from protlc.data.chunks import ChunkWriter, check_not_input
from protlc.data.tables import iter_table_chunks
from protlc.data.loading import EncodedSequences
from protlc.dms import mutations as mut
from protlc.dms.tables import (
    MUTANT,
    MUTANT_COLUMN_CANDIDATES,
    MUTATED_SEQUENCE,
    locate_nn4dms_wild_type,
    read_wild_type,
    row_location,
)
from protlc.errors import ConfigError, InputError
from protlc.inference import check_device, inference_precision, inference_tokens, model_outputs
from protlc.model.checkpoint import load_checkpoint
from protlc.progress import progress_bar

FITNESS = "fitness"
PREDICTED_FAMILY = "predicted_family"
FAMILY_PROBABILITY = "family_probability"
REJECT_COLUMNS = ("row", "token", "reason")
IN_FLIGHT_PER_WORKER = 2
MAX_MISMATCH = 0.2  # share of rows whose wild-type letters may disagree (typos) before a library is refused
MAX_VARIANTS = 10_000_000  # --combinatorial libraries beyond this need --max-variants


@dataclass
class ScoreSummary:
    """What :func:`score_library` did; ``unique_sequences`` counts distinct sequences summed over chunks."""

    rows: int
    scored: int
    rejected: int
    unique_sequences: int
    seconds: float
    out: Path
    rejects: Path | None


class _ScoringOutputs(torch.nn.Module):
    """``(B, L)`` tokens/mask -> ``(B, 1)`` fitness, or ``(B, 3)`` fitness, family index, its probability."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.with_family = getattr(model, "family", None) is not None

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        fitness = self.model(tokens, mask).float()[:, None]
        if not self.with_family:
            return fitness
        probability, index = self.model.family_probabilities(tokens, mask).max(dim=1)
        return torch.cat([fitness, index.float()[:, None], probability[:, None]], dim=1)


class Predictor:
    """Predicts distinct sequences with a loaded fitness model on one device.

    ``tokens_per_batch``: None = ``batch_size`` sequences per batch, else a token budget (see
    :func:`protlc.inference.model_outputs`); a positional head's sequences are never padded (it takes
    exactly the wild type's length, so all its batches have one width anyway).
    """

    def __init__(self, model: torch.nn.Module, device: str, batch_size: int, tokens_per_batch: int | None = None,
                 precision: str = "32"):
        self.device = torch.device(device)
        self.outputs = _ScoringOutputs(model.to(self.device).eval())
        self.batch_size, self.tokens_per_batch, self.precision = batch_size, tokens_per_batch, precision
        self.width_multiple = 1 if getattr(model, "fixed_length", None) is not None else None

    def __call__(self, sequences: list[str]) -> np.ndarray:
        """``(U, 1)`` or ``(U, 3)`` float32 outputs for ``U`` sequences (see :class:`_ScoringOutputs`)."""
        if not sequences:
            return np.empty((0, 3 if self.outputs.with_family else 1), dtype=np.float32)
        out = model_outputs(self.outputs, EncodedSequences(sequences), self.batch_size, self.device, self.precision,
                            self.tokens_per_batch, self.width_multiple)
        return out.reshape(len(sequences), -1)


_WORKER: Predictor | None = None


def _start_worker(checkpoint: str, devices: "multiprocessing.Queue", batch_size: int, threads: int,
                  tokens_per_batch: int | None, precision: str) -> None:
    global _WORKER
    torch.set_num_threads(threads)
    device = devices.get()
    _WORKER = Predictor(load_checkpoint(checkpoint, task="fitness").model, device, batch_size,
                        inference_tokens(torch.device(device), tokens_per_batch), precision)


def _predict_in_worker(sequences: list[str]) -> np.ndarray:
    return _WORKER(sequences)


def _prediction_backend(checkpoint, model: torch.nn.Module, device: str, devices: int, batch_size: int,
                        tokens_per_batch: int | None = None, precision: str = "32"):
    """``(submit, pool)``: ``submit(sequences)`` returns an object whose ``get()`` gives their outputs.

    One device: predicted at once in this process (pool None). Several: a spawned pool of ``devices``
    workers, each loading the checkpoint on its own device (``cuda:i``, or the CPU with an even share
    of the cores).
    """
    if devices == 1:
        predictor = Predictor(model, device, batch_size, inference_tokens(torch.device(device), tokens_per_batch),
                              precision)
        return (lambda sequences: _Done(predictor(sequences))), None
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    for i in range(devices):
        queue.put(f"cuda:{i}" if device.startswith("cuda") else device)
    threads = max(1, (os.cpu_count() or 1) // devices) if device == "cpu" else 1
    pool = context.Pool(devices, _start_worker, (str(checkpoint), queue, batch_size, threads, tokens_per_batch,
                                                 precision))
    return (lambda sequences: pool.apply_async(_predict_in_worker, (sequences,))), pool


class _Done:
    """A finished result with the ``get()`` of ``multiprocessing.pool.AsyncResult``."""

    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


@dataclass
class _Library:
    """Where rows come from: the chunks, which column holds mutants or sequences, how to name a row."""

    chunks: Iterator[pd.DataFrame]
    column: str
    is_sequence: bool
    name: str
    total: int | None

    def where(self, row: int) -> str:
        path = Path(self.name)
        return row_location(path, row) if path.suffix else f"{self.name}, row {row}"


def _generated(mutants: Iterator[str], chunk_size: int) -> Iterator[pd.DataFrame]:
    start = 0
    while batch := list(itertools.islice(mutants, chunk_size)):
        yield pd.DataFrame({MUTANT: batch}, index=pd.RangeIndex(start, start + len(batch)))
        start += len(batch)


def _open_library(library, saturation: bool, combinatorial: str | None, wt: str, offset: int, chunk_size: int,
                  mutant_column: str | None, max_variants: int = MAX_VARIANTS) -> _Library:
    sources = sum([library is not None, saturation, combinatorial is not None])
    if sources != 1:
        raise ConfigError("give exactly one library: a LIBRARY file, --saturation or --combinatorial SPEC")
    if saturation:
        mutants = mut.saturation(wt, offset)
        return _Library(_generated(iter(mutants), chunk_size), MUTANT, False, "--saturation library", len(mutants))
    if combinatorial is not None:
        total = mut.combinatorial_count(wt, combinatorial, offset)
        if total > max_variants:
            raise ConfigError(f"--combinatorial {combinatorial!r} makes {total:,} variants, more than --max-variants "
                              f"{max_variants:,}; pass --max-variants {total} to score them all")
        return _Library(_generated(mut.combinatorial(wt, combinatorial, offset), chunk_size), MUTANT, False,
                        "--combinatorial library", total)
    path = Path(library)
    chunks = iter_table_chunks(path, chunk_size)
    first = next(chunks, None)
    if first is None or first.empty:
        raise InputError(f"{path}: the library has no rows")
    columns = [str(c) for c in first.columns]
    if mutant_column is not None and mutant_column not in columns:
        raise InputError(f"{path}: no mutant column {mutant_column!r} (columns: {', '.join(columns)})")
    column = mutant_column or next((c for c in MUTANT_COLUMN_CANDIDATES if c in columns), None)
    if column is None and MUTATED_SEQUENCE not in columns:
        raise InputError(f"{path}: no mutant column ({', '.join(MUTANT_COLUMN_CANDIDATES)}) and no "
                         f"{MUTATED_SEQUENCE} column (columns: {', '.join(columns)}); name it with --mutant-column")
    total = pq.ParquetFile(path).metadata.num_rows if path.suffix.lower() == ".parquet" else None
    return _Library(itertools.chain([first], chunks), column or MUTATED_SEQUENCE, column is None, str(path), total)


def _sequence_problem(sequence, length: int | None) -> str | None:
    if not isinstance(sequence, str) or not sequence:
        return "empty mutated_sequence"
    problem = ALPHABET.problem(sequence, allow_stop=True)
    if problem is None and length is not None and len(sequence) != length:
        problem = f"sequence has {len(sequence)} residues but the model takes {length} (the wild type's length)"
    return problem


def _check_chunk(frame: pd.DataFrame, library: _Library, applier: mut.MutantApplier, length: int | None
                 ) -> tuple[list, list[tuple[int, str, str]]]:
    """Sequences of a chunk (None for an invalid row) and ``(chunk row, token, reason)`` of invalid rows."""
    values = frame[library.column].tolist()
    if library.is_sequence:
        values = [v.strip() if isinstance(v, str) else v for v in values]
        problems = [(i, str(v), p) for i, v in enumerate(values) if (p := _sequence_problem(v, length))]
        bad = {i for i, _, _ in problems}
        return [None if i in bad else v for i, v in enumerate(values)], problems
    sequences, errors = applier.apply_many(values)
    if MUTATED_SEQUENCE in frame:
        given = frame[MUTATED_SEQUENCE].tolist()
        for i, (ours, theirs) in enumerate(zip(sequences, given)):
            if ours is not None and ours != theirs:
                errors.append((i, str(values[i]), "mutated_sequence disagrees with the mutant applied to the wild type"))
                sequences[i] = None
        errors.sort()
    return sequences, errors


def _raise_first(errors, frame: pd.DataFrame, library: _Library, applier: mut.MutantApplier) -> None:
    row, token, reason = errors[0]
    hint = ""
    if not library.is_sequence and _is_numbering_error(reason):
        fit = mut.suggest_offset(applier.wt, frame[library.column].tolist(), applier.notation)
        if fit is not None and fit != applier.offset:
            hint = f"; the wild-type letters all match with --offset {fit}"
    context = "" if library.is_sequence else f" [notation {applier.notation}, offset {applier.offset}]"
    raise InputError(f"{library.where(int(frame.index[row]))}: {'sequence' if library.is_sequence else 'mutant'} "
                     f"{token[:60]!r}: {reason}{context}{hint} (use --skip-invalid to set such rows aside)")


def rejects_path(out: str | Path) -> Path:
    """``scores.parquet`` -> ``scores.rejects.csv`` (next to the output)."""
    out = Path(out)
    return out.with_name(f"{out.name[: -len(out.suffix)] if out.suffix else out.name}.rejects.csv")


def _remove_stale_rejects(out, *inputs) -> None:
    """Remove ``OUT.rejects.csv`` of an earlier ``--skip-invalid`` run: it no longer describes ``out``."""
    stale = rejects_path(out)
    try:
        check_not_input(stale, *inputs)
    except ConfigError:  # never an input of this run
        return
    stale.unlink(missing_ok=True)


def _resolve_reference(loaded, wt) -> str:
    """The wild type to apply mutants to: ``--wt`` or the checkpoint's own."""
    stored = loaded.hparams.get("wild_type")
    wild_type = read_wild_type(wt) if wt is not None else stored
    if wild_type is None:
        raise ConfigError("the checkpoint stores no wild type; give --wt SEQUENCE or FASTA")
    length = loaded.model.fixed_length
    if length is not None and len(wild_type) != length:
        raise ConfigError(f"--wt has {len(wild_type)} residues but this model's positional head takes {length} "
                          "(the wild type it was trained on)")
    return wild_type


def _library_offset(offset: int | None, notation: str, wild_type: str, library, loaded) -> int:
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


def _choose_applier(mutants: list, notation: str, offset: int | None, wild_type: str, library, loaded,
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
        candidates = [mut.applier(wild_type, notation, _library_offset(offset, notation, wild_type, library, loaded))]
        if ambiguous:
            nn4dms = _library_offset(None, "nn4dms", wild_type, library, loaded)
            if nn4dms != candidates[0].offset:
                candidates.append(mut.applier(wild_type, "nn4dms", nn4dms))
        return min(candidates, key=lambda candidate: _mismatches(candidate, mutants))
    return mut.applier(wild_type, notation, _library_offset(offset, notation, wild_type, library, loaded))


def _mismatches(applier: mut.MutantApplier, mutants: list) -> int:
    """Rows whose wild-type letters or positions disagree with the wild type under this reading."""
    return sum(_is_numbering_error(reason) for _, _, reason in applier.apply_many(mutants)[1])


def _is_numbering_error(reason: str) -> bool:
    return "wild-type letter" in reason or "beyond" in reason or "before the first" in reason


def _check_agreement(mismatched: int, examined: int, name: str, applier: mut.MutantApplier, sample: list) -> None:
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


def score_library(checkpoint: str | Path, library: str | Path | None, out: str | Path, *, wt: str | Path | None = None,
                  offset: int | None = None, notation: str = "auto", saturation: bool = False,
                  combinatorial: str | None = None, skip_invalid: bool = False, mutant_column: str | None = None,
                  batch_size: int = 512, chunk_size: int = 100_000, device: str = "cpu", devices: int = 1,
                  output_column: str = FITNESS, progress: bool | None = False, tokens_per_batch: int | None = None,
                  precision: str | None = None, max_variants: int = MAX_VARIANTS,
                  announce: Callable[[str], None] | None = None) -> ScoreSummary:
    """Score every variant of a library with a fitness checkpoint; see the module docstring.

    Args:
        wt: FASTA path or sequence; None = the wild type stored in the checkpoint.
        offset: number of the wild type's first residue in the mutant strings (generated libraries are
            numbered from it); None = the notation's own numbering (see :func:`_library_offset`): 1 for
            ProteinGym, ESM and generated libraries, the data set's ``wt_offset`` for nn4dms.
        notation: ``auto`` (decided on the first chunk), ``proteingym``, ``nn4dms`` or ``esm``.
        skip_invalid: write invalid rows to :func:`rejects_path` (``row, token, reason``; row = 0-based
            data row) instead of failing on the first one.
        tokens_per_batch, precision: as in :func:`protlc.predict.predict` (None: token batches on CUDA,
            the checkpoint's training precision).
        max_variants: the most variants a ``combinatorial`` library may have (refused beyond, before any work).
        announce: called with one line saying how many variants a generated library has, before scoring.

    Raises:
        CheckpointError: not a fitness checkpoint (e.g. a family classifier).
        InputError: unreadable or empty library, bad mutant (file, row, token and reason), bad sequence,
            or more than :data:`MAX_MISMATCH` of rows disagreeing with the wild type (wrong numbering or
            another protein; even with ``skip_invalid``).
        ConfigError: bad options (library sources, batch sizes, devices, output column), or a combinatorial
            library of more than ``max_variants`` variants.
    """
    check_not_input(out, library, checkpoint)
    if skip_invalid:
        check_not_input(rejects_path(out), library, checkpoint)
    if batch_size < 1 or chunk_size < 1 or devices < 1:
        raise ConfigError("--batch-size, chunk size and --devices must be positive integers")
    inference_tokens(check_device(device, workers=devices), tokens_per_batch)  # checked before any work
    if not output_column.strip():
        raise ConfigError("--output-column must not be empty")
    loaded = load_checkpoint(checkpoint, task="fitness")
    precision = inference_precision(precision, loaded.config)
    started = time.perf_counter()
    wild_type = _resolve_reference(loaded, wt)
    generated = saturation or combinatorial is not None
    if generated:
        notation, offset = mut.resolve_notation("proteingym", offset)
    source = _open_library(library, saturation, combinatorial, wild_type, offset, chunk_size, mutant_column,
                           max_variants)
    if generated and announce is not None:
        announce(f"scoring {source.total:,} variants of the {source.name}")
    first = next(source.chunks)
    source.chunks = itertools.chain([first], source.chunks)
    if output_column in first.columns:
        raise ConfigError(f"{source.name} already has a column {output_column!r}; choose another --output-column")
    if source.is_sequence:
        applier = mut.applier(wild_type, *mut.resolve_notation("proteingym" if notation == "auto" else notation, offset))
    else:  # a wrong numbering or another protein is refused here, before anything is written
        mutants = first[source.column].tolist()
        applier = _choose_applier(mutants, notation, offset, wild_type, None if generated else library, loaded,
                                  source.name)
        _check_agreement(_mismatches(applier, mutants), len(first), source.name, applier, mutants)
    labels = [lab.get("family_id", str(lab)) if isinstance(lab, dict) else str(lab) for lab in loaded.labels]

    submit, pool = _prediction_backend(checkpoint, loaded.model, device, devices, batch_size, tokens_per_batch,
                                       precision)
    counts = {"rows": 0, "scored": 0, "rejected": 0, "unique": 0, "mismatched": 0}
    rejects_file = rejects_path(out) if skip_invalid else None

    def write(job, writer) -> None:
        frame, codes, pending = job
        outputs = pending.get()[codes]
        frame[output_column] = outputs[:, 0]
        if outputs.shape[1] == 3:
            frame[PREDICTED_FAMILY] = np.asarray(labels, dtype=object)[outputs[:, 1].astype(np.int64)]
            frame[FAMILY_PROBABILITY] = outputs[:, 2]
        writer.write(frame)
        bar.update(len(frame))

    try:
        rejects_context = ChunkWriter(rejects_file) if rejects_file else contextlib.nullcontext()
        with progress_bar(progress, total=source.total, desc="score", unit="variant") as bar, \
                ChunkWriter(out) as writer, rejects_context as reject_writer:
            in_flight: deque = deque()
            for frame in source.chunks:
                counts["rows"] += len(frame)
                sequences, errors = _check_chunk(frame, source, applier, loaded.model.fixed_length)
                if errors and not skip_invalid:
                    _raise_first(errors, frame, source, applier)
                counts["mismatched"] += sum(_is_numbering_error(reason) for _, _, reason in errors)
                if errors:
                    reject_writer.write(pd.DataFrame([(int(frame.index[r]), t, why) for r, t, why in errors],
                                                     columns=list(REJECT_COLUMNS)))
                    bar.update(len(errors))
                    keep = np.array([s is not None for s in sequences])
                    frame = frame[keep]
                    sequences = [s for s in sequences if s is not None]
                codes, uniques = pd.factorize(pd.Series(sequences, dtype=object))
                counts["scored"] += len(frame)
                counts["rejected"] += len(errors)
                counts["unique"] += len(uniques)
                in_flight.append((frame.reset_index(drop=True), codes, submit(list(uniques))))
                while len(in_flight) > (IN_FLIGHT_PER_WORKER * devices if pool is not None else 0):
                    write(in_flight.popleft(), writer)
            while in_flight:
                write(in_flight.popleft(), writer)
            _check_agreement(counts["mismatched"], counts["rows"], source.name, applier, [])
            if counts["rows"] and not counts["scored"]:
                raise InputError(f"{source.name}: none of its {counts['rows']:,} rows could be scored (see the "
                                 "reasons without --skip-invalid); nothing was written")
            if reject_writer is not None and reject_writer.rows == 0:
                reject_writer.write(pd.DataFrame(columns=list(REJECT_COLUMNS)))
    finally:
        if pool is not None:
            pool.terminate()
    if rejects_file is None:
        _remove_stale_rejects(out, library, checkpoint)
    return ScoreSummary(counts["rows"], counts["scored"], counts["rejected"], counts["unique"],
                        time.perf_counter() - started, Path(out), rejects_file)
