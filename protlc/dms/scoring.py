"""Streaming fitness scoring of mutant libraries: chunked read -> apply -> dedupe -> batch -> predict -> chunked write.

A library (:mod:`protlc.dms.library`) is a CSV/TSV/Parquet table with a mutant column (any notation of
:mod:`protlc.dms.mutations`) or a full-sequence column, or is generated: every single substitution of the
wild type (``saturation``) or a combinatorial spec. Memory stays constant in the library's size: one chunk
(``chunk_size`` rows) is read, its mutants applied and checked, identical sequences collapsed (each
distinct sequence is predicted once per chunk), the distinct sequences predicted in length-bucketed
batches, and the chunk's rows written with a ``fitness`` column (and, for a model trained with
``--init``, ``predicted_family`` and ``family_probability``) before the next chunk is read. Rows keep
their input order; output and rejects files appear atomically when everything succeeded.

No per-row Python on the hot path: a chunk's mutants become an ``(n, L)`` residue matrix by patching the
wild type (:func:`protlc.dms.encoding.encode_mutants`), distinct rows are found on that matrix, and
batches of equal-length variants, which have no padding, run the encoder's fast inference (input
convolution by table look-up, :meth:`protlc.model.protcnn.ProtCNNEncoder.input_by_lookup`; BatchNorm folded
into the blocks' convolutions) under ``inference_mode``.

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
from typing import Callable, Sequence

import numpy as np
import torch

from protlc.alphabet import ALPHABET
from protlc.data.chunks import ChunkWriter, check_not_input
from protlc.data.loading import EncodedSequences
from protlc.dms import mutations as mut
from protlc.dms.library import (
    MAX_VARIANTS,
    check_agreement,
    check_chunk,
    choose_applier,
    distinct,
    is_numbering_error,
    mismatches,
    open_library,
    raise_first,
)
from protlc.dms.rejects import Reject, RejectWriter
from protlc.dms.tables import read_wild_type
from protlc.errors import ConfigError, InputError
from protlc.inference import check_device, inference_precision, inference_tokens, model_outputs
from protlc.model.checkpoint import load_checkpoint
from protlc.model.fitness import FitnessEnsemble
from protlc.progress import progress_bar
from protlc.model.protcnn import ProtCNNEncoder

FITNESS = "fitness"
PREDICTED_FAMILY = "predicted_family"
FAMILY_PROBABILITY = "family_probability"
IN_FLIGHT_PER_WORKER = 2


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
        for module in model.modules():  # equal-length variants: no padding, fast inference
            if isinstance(module, ProtCNNEncoder):
                module.fast_inference = True

    def __call__(self, sequences: np.ndarray | list[str]) -> np.ndarray:
        """``(U, 1)`` or ``(U, 3)`` float32 outputs for ``U`` sequences (see :class:`_ScoringOutputs`): an
        ``(U, L)`` matrix of ASCII residues, or a list of strings when their lengths differ."""
        if not len(sequences):
            return np.empty((0, 3 if self.outputs.with_family else 1), dtype=np.float32)
        encoded = (EncodedSequences.from_token_matrix(ALPHABET.encode_bytes(sequences))
                   if isinstance(sequences, np.ndarray) else EncodedSequences(sequences))
        with torch.inference_mode():
            out = model_outputs(self.outputs, encoded, self.batch_size, self.device, self.precision,
                                self.tokens_per_batch, self.width_multiple)
        return out.reshape(len(sequences), -1)


_WORKER: Predictor | None = None


def load_scoring_model(checkpoint: str | Path, ensemble: Sequence[str | Path] = ()):
    """``(loaded, model)``: the first checkpoint as loaded, and the model to score with: its model, or with
    ``ensemble`` a :class:`protlc.model.fitness.FitnessEnsemble` averaging it and every other checkpoint's
    model (each checkpoint counts once, whatever it holds).

    Raises:
        CheckpointError: one is not a fitness checkpoint. ConfigError: one was trained on another wild type.
    """
    loaded = load_checkpoint(checkpoint, task="fitness")
    if not ensemble:
        return loaded, loaded.model
    models = [loaded.model]
    for path in ensemble:
        member = load_checkpoint(path, task="fitness")
        if member.hparams.get("wild_type") != loaded.hparams.get("wild_type"):
            raise ConfigError(f"--ensemble {path}: trained on another wild type than {checkpoint}; an ensemble "
                              "averages models of one protein")
        models.append(member.model)
    return loaded, FitnessEnsemble(models).eval()


def _start_worker(checkpoints: list[str], devices: "multiprocessing.Queue", batch_size: int, threads: int,
                  tokens_per_batch: int | None, precision: str) -> None:
    global _WORKER
    torch.set_num_threads(threads)
    device = devices.get()
    _WORKER = Predictor(load_scoring_model(checkpoints[0], checkpoints[1:])[1], device, batch_size,
                        inference_tokens(torch.device(device), tokens_per_batch), precision)


def _predict_in_worker(sequences: np.ndarray | list[str]) -> np.ndarray:
    return _WORKER(sequences)


def _prediction_backend(checkpoints: list[str], model: torch.nn.Module, device: str, devices: int, batch_size: int,
                        tokens_per_batch: int | None = None, precision: str = "32"):
    """``(submit, pool)``: ``submit(sequences)`` returns an object whose ``get()`` gives their outputs.

    One device: predicted at once in this process (pool None). Several: a spawned pool of ``devices``
    workers, each loading the checkpoints (:func:`load_scoring_model`) on its own device (``cuda:i``, or the
    CPU with an even share of the cores).
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
    pool = context.Pool(devices, _start_worker, ([str(c) for c in checkpoints], queue, batch_size, threads,
                                                 tokens_per_batch, precision))
    return (lambda sequences: pool.apply_async(_predict_in_worker, (sequences,))), pool


class _Done:
    """A finished result with the ``get()`` of ``multiprocessing.pool.AsyncResult``."""

    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


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


def score_library(checkpoint: str | Path, library: str | Path | None, out: str | Path, *, wt: str | Path | None = None,
                  offset: int | None = None, notation: str = "auto", saturation: bool = False,
                  combinatorial: str | None = None, skip_invalid: bool = False, mutant_column: str | None = None,
                  sequence_column: str | None = None,
                  batch_size: int = 512, chunk_size: int = 100_000, device: str = "cpu", devices: int = 1,
                  output_column: str = FITNESS, progress: bool | None = False, tokens_per_batch: int | None = None,
                  precision: str | None = None, max_variants: int = MAX_VARIANTS,
                  announce: Callable[[str], None] | None = None, ensemble: Sequence[str | Path] = ()) -> ScoreSummary:
    """Score every variant of a library with a fitness checkpoint; see the module docstring.

    Args:
        wt: FASTA path or sequence; None = the wild type stored in the checkpoint.
        offset: number of the wild type's first residue in the mutant strings (generated libraries are
            numbered from it); None = the notation's own numbering (see :func:`library_offset`): 1 for
            ProteinGym, ESM and generated libraries, the data set's ``wt_offset`` for nn4dms.
        notation: ``auto`` (decided on the first chunk), ``proteingym``, ``nn4dms`` or ``esm``.
        skip_invalid: write invalid rows to :func:`rejects_path` (``row, variant, token, reason``; row = 0-based
            data row; see :mod:`protlc.dms.rejects`) instead of failing on the first one.
        mutant_column, sequence_column: the library's mutant column (default: the first of
            ``mutant``, ``variant``, ``mutation(s)``) and full-sequence column (default ``mutated_sequence``);
            with both, each sequence must equal its mutant applied to the wild type.
        tokens_per_batch, precision: as in :func:`protlc.predict.predict` (None: token batches on CUDA,
            the checkpoint's training precision).
        max_variants: the most variants a ``combinatorial`` library may have (refused beyond, before any work).
        announce: called with one line saying how many variants a generated library has, before scoring.
        ensemble: more fitness checkpoints of the same wild type (e.g. ``train-dms`` runs with other
            ``--seed``): the score is the mean of all the checkpoints' predictions (:func:`load_scoring_model`);
            the notation, numbering and family labels are the first checkpoint's.

    Raises:
        CheckpointError: not a fitness checkpoint (e.g. a family classifier).
        InputError: unreadable or empty library, bad mutant (file, row, token and reason), bad sequence,
            or more than :data:`protlc.dms.library.MAX_MISMATCH` of rows disagreeing with the wild type (wrong numbering or
            another protein; even with ``skip_invalid``).
        ConfigError: bad options (library sources, batch sizes, devices, output column), or a combinatorial
            library of more than ``max_variants`` variants.
    """
    check_not_input(out, library, checkpoint, *ensemble)
    if skip_invalid:
        check_not_input(rejects_path(out), library, checkpoint, *ensemble)
    if batch_size < 1 or chunk_size < 1 or devices < 1:
        raise ConfigError("--batch-size, chunk size and --devices must be positive integers")
    inference_tokens(check_device(device, workers=devices), tokens_per_batch)  # checked before any work
    if not output_column.strip():
        raise ConfigError("--output-column must not be empty")
    loaded, model = load_scoring_model(checkpoint, ensemble)
    precision = inference_precision(precision, loaded.config)
    started = time.perf_counter()
    wild_type = _resolve_reference(loaded, wt)
    generated = saturation or combinatorial is not None
    if generated:
        notation, offset = mut.resolve_notation("proteingym", offset)
    source = open_library(library, saturation, combinatorial, wild_type, offset, chunk_size, mutant_column,
                          sequence_column, max_variants)
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
        applier = choose_applier(mutants, notation, offset, wild_type, None if generated else library, loaded,
                                  source.name)
        check_agreement(mismatches(applier, mutants), len(first), source.name, applier, mutants)
    labels = [lab.get("family_id", str(lab)) if isinstance(lab, dict) else str(lab) for lab in loaded.labels]

    submit, pool = _prediction_backend([checkpoint, *ensemble], model, device, devices, batch_size, tokens_per_batch,
                                       precision)
    counts = {"rows": 0, "scored": 0, "rejected": 0, "unique": 0, "mismatched": 0}
    rejects_file = rejects_path(out) if skip_invalid else None

    def write(job, writer, bar) -> None:
        frame, codes, pending = job
        outputs = pending.get()[codes]
        frame[output_column] = outputs[:, 0]
        if outputs.shape[1] == 3:
            frame[PREDICTED_FAMILY] = np.asarray(labels, dtype=object)[outputs[:, 1].astype(np.int64)]
            frame[FAMILY_PROBABILITY] = outputs[:, 2]
        writer.write(frame)
        bar.update(len(frame))

    try:
        rejects_context = RejectWriter(rejects_file) if rejects_file else contextlib.nullcontext()
        with progress_bar(progress, total=source.total, desc="score", unit="variant") as bar, \
                ChunkWriter(out) as writer, rejects_context as reject_writer:
            in_flight: deque = deque()
            for frame in source.chunks:
                counts["rows"] += len(frame)
                sequences, errors = check_chunk(frame, source, applier, loaded.model.fixed_length)
                if errors and not skip_invalid:
                    raise_first(errors, frame, source, applier)
                counts["mismatched"] += sum(is_numbering_error(reason) for _, _, reason in errors)
                if errors:
                    variants = frame[source.column]
                    reject_writer.write([Reject(int(frame.index[r]), str(variants.iloc[r]), t, why)
                                         for r, t, why in errors])
                    bar.update(len(errors))
                    keep = np.ones(len(frame), dtype=bool)
                    keep[[r for r, _, _ in errors]] = False
                    frame = frame[keep]
                codes, uniques = distinct(sequences)
                counts["scored"] += len(frame)
                counts["rejected"] += len(errors)
                counts["unique"] += len(uniques)
                in_flight.append((frame.reset_index(drop=True), codes, submit(uniques)))
                while len(in_flight) > (IN_FLIGHT_PER_WORKER * devices if pool is not None else 0):
                    write(in_flight.popleft(), writer, bar)
            while in_flight:
                write(in_flight.popleft(), writer, bar)
            check_agreement(counts["mismatched"], counts["rows"], source.name, applier, [])
            if counts["rows"] and not counts["scored"]:
                raise InputError(f"{source.name}: none of its {counts['rows']:,} rows could be scored (see the "
                                 "reasons without --skip-invalid); nothing was written")
    finally:
        if pool is not None:
            pool.terminate()
    if rejects_file is None:
        _remove_stale_rejects(out, library, checkpoint)
    return ScoreSummary(counts["rows"], counts["scored"], counts["rejected"], counts["unique"],
                        time.perf_counter() - started, Path(out), rejects_file)
