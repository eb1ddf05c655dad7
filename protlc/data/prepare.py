"""``prepare_dataset``: readers -> filters -> splits -> noise -> store, returning a summary.

Order of the steps (each one reported in the summary and the manifest):

1. read every input (validated records, see :mod:`protlc.data.readers`);
2. duplicate sequence names: identical duplicates (same family and sequence) are dropped, keeping the
   first; a name seen with a different family or sequence is an error naming both records;
3. ``max_length``: longer sequences are dropped from every split (``too_long="drop"``, the default;
   before splitting, so they never take a place in the split), or, with ``too_long="truncate"``, kept:
   the training split's are cut to their first ``max_length`` residues (after step 6, like the reference
   study, which cut only the training proteins to 434 residues) and dev/test keep them whole;
4. ``min_family_size``: families with fewer members (over all splits) are dropped;
5. label vocabulary: the remaining family ids sorted; a family with two different accessions is an error;
6. splits: kept when the input fixes them (ProtCNN shards), else :func:`splits.stratified_split`
   (``split_method="random"``, the default) or whole MMseqs2 clusters per family
   (``split_method="clustered"``, :mod:`protlc.data.clusters`); an empty train, dev or test split is an error;
7. noise on the training split only (cropping, then labels; crops are windows of the truncated training
   sequences), see :mod:`protlc.data.noise`; confusable label noise maps each family to its most similar
   other family by the k-mer profiles of its (truncated, uncropped) training domains
   (:mod:`protlc.data.similarity`);
8. atomic write (:func:`store.write_dataset`).

With ``novel_families``, whole families are taken out after step 4 (before the vocabulary, so
``labels.json`` holds only the known families) and written as the ``novel`` split
(:mod:`protlc.data.novel`).

Seeds: ``seed`` (default 0) seeds everything; ``split_seed`` and ``noise_seed`` (default: ``seed``)
override one concern each. Every concern draws from its own stream
``numpy.random.default_rng([concern_seed, stream])`` (split 1, crop 2, label 3; the clustered split's
identity-check sample 4; the novel families 5, from the split seed), so changing the crop settings never changes which labels are corrupted, and
neither changes the split.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from protlc import __version__
from protlc import columns as col
from protlc.data import clusters, fasta, noise, novel, readers, similarity, splits, store
from protlc.data.assign import assign_splits
from protlc.data.records import RecordBlock
from protlc.data.summary import LONG_SEQUENCE, PrepareSummary, describe_noise, family_counts, length_stats
from protlc.errors import ConfigError, InputError
from protlc.progress import progress_bar

TOO_LONG_POLICIES = ("drop", "truncate")
SPLIT_METHODS = ("random", "clustered")
CROP_STREAM, LABEL_STREAM = 2, 3  # SPLIT_STREAM 1, IDENTITY_STREAM 4: protlc.data.assign; novel 5


@dataclass(frozen=True)
class PrepareOptions:
    """Every option of ``protlc prepare`` (see the CLI help for their meaning)."""

    format: str = "auto"
    label_noise: float = 0.0
    label_noise_kind: str = "symmetric"
    crop_noise: float = 0.0
    crop_fraction: tuple[float, float] = noise.DEFAULT_CROP_FRACTION
    split: tuple[float, float, float] | None = None  # None: the default fractions, or the given split
    min_family_size: int = 1
    max_length: int | None = None
    too_long: str = "drop"
    seed: int = 0
    split_seed: int | None = None
    noise_seed: int | None = None
    fasta_family_regex: str | None = None
    split_method: str = "random"  # random: per-family random split; clustered: whole MMseqs2 clusters
    cluster_identity: float = clusters.DEFAULT_IDENTITY
    cluster_coverage: float = clusters.DEFAULT_COVERAGE
    cluster_linkage: str = clusters.DEFAULT_LINKAGE
    cluster_threads: int | None = None  # None: all cores
    identity_sample: int = clusters.DEFAULT_IDENTITY_SAMPLE
    novel_families: int | tuple[str, ...] | None = None  # K families drawn with the split seed, or their ids

    def check(self) -> None:
        """Raises ConfigError for any out-of-range option (before anything is read)."""
        if self.format != "auto" and self.format not in readers.FORMATS:
            raise ConfigError(f"--format {self.format!r}: choose one of auto, {', '.join(readers.FORMATS)}")
        noise.check_rates(self.label_noise, self.crop_noise, self.crop_fraction, self.label_noise_kind)
        if self.split is not None:
            splits.parse_fractions(self.split)
        if self.min_family_size < 1:
            raise ConfigError(f"--min-family-size {self.min_family_size}: must be >= 1")
        if self.max_length is not None and self.max_length < 1:
            raise ConfigError(f"--max-length {self.max_length}: must be >= 1")
        if self.too_long not in TOO_LONG_POLICIES:
            raise ConfigError(f"--too-long {self.too_long!r}: choose one of {', '.join(TOO_LONG_POLICIES)}")
        for name in ("seed", "split_seed", "noise_seed"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"--{name.replace('_', '-')} {value}: must be >= 0")
        if self.fasta_family_regex is not None:
            fasta.compile_fasta_patterns(self.fasta_family_regex)
        if self.split_method not in SPLIT_METHODS:
            raise ConfigError(f"--split-method {self.split_method!r}: choose one of {', '.join(SPLIT_METHODS)}")
        if self.novel_families is not None:
            novel.parse_novel_families(self.novel_families)
        if self.split_method == "clustered":
            clusters.check_options(self.cluster_identity, self.cluster_coverage, self.cluster_linkage,
                                   self.cluster_threads, self.identity_sample)


@dataclass
class _Rows:
    """Every record read: pyarrow chunked arrays over the readers' blocks (never copied) plus the integer
    columns the pipeline works on. Filters act on a row mask; the strings are copied once, by the final
    per-split take."""

    blocks: list[RecordBlock]
    block_starts: np.ndarray  # first row of each block
    names: pa.ChunkedArray
    accessions: pa.ChunkedArray
    sequences: pa.ChunkedArray
    family_names: list[str]  # distinct family ids, in order of appearance
    family: np.ndarray  # int64 (N,): index into family_names
    lengths: np.ndarray  # int64 (N,): sequence lengths as read
    given_split: np.ndarray  # int8 (N,): split code fixed by the input, -1 when none

    def location(self, row: int) -> str:
        b = int(np.searchsorted(self.block_starts, row, side="right") - 1)
        return self.blocks[b].location(row - int(self.block_starts[b]))


def _codes(array: pa.ChunkedArray, values: pa.Array) -> np.ndarray:
    """Index of each element in ``values`` (int64; -1 for nulls)."""
    return pc.fill_null(pc.index_in(array, value_set=values), -1).to_numpy().astype(np.int64)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_all(inputs: Sequence[Path], options: PrepareOptions, progress: bool | None) -> tuple[_Rows, list[dict]]:
    sources, hashes, blocks = [], [], []
    patterns = (options.fasta_family_regex,) if options.fasta_family_regex else None
    # checksums run on a second thread while the parser reads (hashlib releases the GIL)
    with ThreadPoolExecutor(max_workers=1) as hasher, \
            progress_bar(progress, unit=" seq", unit_scale=True,
                         bar_format="{desc}{n_fmt}{unit} [{elapsed}, {rate_fmt}]") as bar:
        for path in inputs:
            fmt = readers.detect_format(path) if options.format == "auto" else options.format
            bar.set_description(f"reading {path.name}")
            for file in readers.source_files(path, fmt):
                sources.append({"path": str(file.resolve()), "format": fmt, "size": file.stat().st_size})
                hashes.append(hasher.submit(_sha256, file))
            blocks.extend(readers.read_blocks(path, fmt, fasta_patterns=patterns, on_progress=bar.update))
        for source, digest in zip(sources, hashes):
            source["sha256"] = digest.result()
    sizes = np.array([len(b) for b in blocks], dtype=np.int64)

    def column(field_name: str) -> pa.ChunkedArray:
        return pa.chunked_array([getattr(b, field_name) for b in blocks], pa.string())

    families, sequences = column("family_ids"), column("sequences")
    family_values = pc.unique(families)
    rows = _Rows(
        blocks=blocks, block_starts=np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64),
        names=column("names"), accessions=column("accessions"), sequences=sequences,
        family_names=family_values.to_pylist(), family=_codes(families, family_values),
        lengths=pc.utf8_length(sequences).to_numpy().astype(np.int64),
        given_split=np.repeat(np.array([col.SPLITS.index(b.split) if b.split else -1 for b in blocks], dtype=np.int8), sizes),
    )
    return rows, sources


def _duplicates(rows: _Rows) -> np.ndarray:
    """Rows repeating an earlier row's name with the same family and sequence (to drop).

    Raises:
        InputError: a repeated name with a different family or sequence, naming both records.
    """
    codes = _codes(rows.names, pc.unique(rows.names))
    counts = np.bincount(codes)
    dup = np.flatnonzero(counts[codes] > 1)
    if dup.size == 0:
        return dup
    _, first_pos = np.unique(codes[dup], return_index=True)
    first_of = np.full(counts.size, -1, dtype=np.int64)
    first_of[codes[dup[first_pos]]] = dup[first_pos]
    later = dup[first_of[codes[dup]] != dup]
    firsts = first_of[codes[later]]
    family_differs = rows.family[later] != rows.family[firsts]
    sequence_differs = pc.not_equal(rows.sequences.take(later), rows.sequences.take(firsts)).to_numpy()
    conflicts = np.flatnonzero(family_differs | sequence_differs)
    if conflicts.size:
        i = int(conflicts[0])
        a, b = int(firsts[i]), int(later[i])
        what = (f"different families ({rows.family_names[rows.family[a]]!r} vs {rows.family_names[rows.family[b]]!r})"
                if family_differs[i] else "different sequences")
        raise InputError(
            f"{rows.location(b)}: duplicate sequence name {rows.names[b].as_py()!r} with {what}; first seen at {rows.location(a)}"
        )
    return later


def _family_accessions(rows: _Rows, ids: np.ndarray, labels: np.ndarray, num_labels: int) -> list[str | None]:
    """The accession of every label's family (None when unknown). Raises InputError on two different ones."""
    values = rows.accessions.drop_null().unique()
    result: list[str | None] = [None] * num_labels
    if len(values) == 0:
        return result
    accession = _codes(rows.accessions, values)[ids]
    known = accession >= 0
    pairs, first = np.unique(labels[known] * len(values) + accession[known], return_index=True)
    pair_labels = pairs // len(values)
    clash = np.flatnonzero(pair_labels[1:] == pair_labels[:-1])
    if clash.size:
        j = int(clash[0])
        row_a, row_b = sorted((int(ids[known][first[j]]), int(ids[known][first[j + 1]])))
        family = rows.family_names[rows.family[row_a]]
        raise InputError(
            f"{rows.location(row_b)}: family {family!r} has accession {rows.accessions[row_b].as_py()!r} here but "
            f"{rows.accessions[row_a].as_py()!r} at {rows.location(row_a)}; mixing Pfam releases?"
        )
    for label, code in zip(pair_labels.tolist(), (pairs % len(values)).tolist()):
        result[label] = values[code].as_py()
    return result


def _filter(rows: _Rows, options: PrepareOptions) -> tuple[np.ndarray, dict, dict | None]:
    """Duplicates, ``max_length``, ``min_family_size`` (in this order).

    ``too_long="truncate"`` keeps every row here (:func:`prepare_dataset` cuts the training split's).

    Returns:
        ``(ids, counts, dropped_per_split)``: the rows kept (ascending), the counts for
        :class:`PrepareSummary`, and the too-long rows dropped per split (``{split: n}``; None when
        rows were dropped before a stratified split, so they have no split).
    """
    alive = np.ones(rows.family.shape[0], dtype=bool)
    duplicates = _duplicates(rows)
    alive[duplicates] = False
    too_long, dropped_per_split = 0, dict.fromkeys(col.SPLITS, 0)
    if options.max_length is not None:
        long_rows = alive & (rows.lengths > options.max_length)
        too_long = int(long_rows.sum())
        if options.too_long == "drop":
            alive &= ~long_rows
            if (rows.given_split >= 0).all():
                per_split = np.bincount(rows.given_split[long_rows], minlength=len(col.SPLITS))
                dropped_per_split = dict(zip(col.SPLITS, per_split.tolist()))
            elif too_long:
                dropped_per_split = None
    sizes = np.bincount(rows.family[alive], minlength=len(rows.family_names))
    small = (sizes > 0) & (sizes < options.min_family_size)
    alive &= ~small[rows.family]
    counts = {"duplicates_dropped": int(duplicates.size), "too_long": too_long,
              "families_dropped": int(small.sum()), "sequences_dropped_small": int(sizes[small].sum())}
    return np.flatnonzero(alive), counts, dropped_per_split


def _vocabulary(rows: _Rows, ids: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The family ids present among ``ids``, sorted, and the int32 label of every kept row."""
    present = np.unique(rows.family[ids])
    present = present[np.argsort([rows.family_names[c] for c in present], kind="stable")]
    label_of_family = np.full(len(rows.family_names), -1, dtype=np.int32)
    label_of_family[present] = np.arange(present.size, dtype=np.int32)
    return [rows.family_names[c] for c in present], label_of_family[rows.family[ids]]


def _take_windows(sequences: pa.ChunkedArray, rows: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                  lengths: np.ndarray) -> pa.ChunkedArray:
    """``sequences[rows]`` cut to ``[starts, ends)``, in a single take.

    Only the cut rows go through Python (string slicing); they are appended as one more chunk and the
    take picks them from there, so the long column is copied once.
    """
    cut = np.flatnonzero((starts > 0) | (ends < lengths))
    if cut.size == 0:
        return sequences.take(rows)
    pieces = [s[a:b] for s, a, b in zip(sequences.take(rows[cut]).to_pylist(), starts[cut].tolist(), ends[cut].tolist())]
    index = rows.copy()
    index[cut] = len(sequences) + np.arange(cut.size)
    return pa.chunked_array(sequences.chunks + [pa.array(pieces, pa.string())]).take(index)


def _split_table(rows: _Rows, select: np.ndarray, clean: np.ndarray, observed: np.ndarray, starts: np.ndarray,
                 ends: np.ndarray, vocab: pa.Array, accessions: pa.Array) -> pa.Table:
    observed_idx, clean_idx = pa.array(observed), pa.array(clean)
    return pa.table({
        col.SEQUENCE_NAME: rows.names.take(select),
        col.SEQUENCE: _take_windows(rows.sequences, select, starts, ends, rows.lengths[select]),
        col.LABEL: observed_idx,
        col.FAMILY_ID: vocab.take(observed_idx),
        col.FAMILY_ACCESSION: accessions.take(observed_idx),
        col.CLEAN_LABEL: clean_idx,
        col.CLEAN_FAMILY_ID: vocab.take(clean_idx),
        col.IS_NOISY: pa.array(observed != clean),
        col.CROP_START: pa.array(starts.astype(np.int32)),
        col.CROP_END: pa.array(ends.astype(np.int32)),
        col.LENGTH: pa.array((ends - starts).astype(np.int32)),
    })


def prepare_dataset(inputs: Sequence[str | Path], out_dir: str | Path, options: PrepareOptions | None = None,
                    *, overwrite: bool = False, progress: bool | None = None) -> PrepareSummary:
    """Prepare a dataset directory (see :mod:`protlc.data.store`) from family-labelled inputs.

    Args:
        inputs: files (Stockholm, FASTA, TSV/CSV, gzipped or not) and/or ProtCNN shard directories.
        out_dir: the dataset directory to create (replaced only with ``overwrite``).
        progress: show a progress bar on stderr (None: only when stderr is a terminal).
    Returns:
        the :class:`PrepareSummary` (also recorded in ``manifest.json``).
    Raises:
        ConfigError: bad options, or ``out_dir`` exists without ``overwrite``.
        InputError: unreadable/bad input, conflicting duplicates, a split that would be empty.
    """
    options = options or PrepareOptions()
    options.check()
    if not inputs:
        raise ConfigError("give at least one INPUT file or directory")
    inputs = [Path(p) for p in inputs]
    store.check_output(out_dir, overwrite)
    split_seed = options.seed if options.split_seed is None else options.split_seed
    noise_seed = options.seed if options.noise_seed is None else options.noise_seed

    rows, sources = _read_all(inputs, options, progress)
    ids, filtered, dropped_per_split = _filter(rows, options)
    if ids.size == 0:
        raise InputError(f"{', '.join(map(str, inputs))}: no sequences left after filtering (--min-family-size/--max-length)")
    novel_ids = ids[:0]
    if options.novel_families is not None:
        ids, novel_ids = novel.hold_out(rows.family_names, rows.family, ids, options.novel_families, split_seed,
                                        ", ".join(map(str, inputs)))
    vocabulary, labels = _vocabulary(rows, ids)
    vocab = pa.array(vocabulary, pa.string())
    accessions = pa.array(_family_accessions(rows, ids, labels, len(vocabulary)), pa.string())
    codes, split_info = assign_splits(
        rows.given_split[ids], labels, options, split_seed, inputs, vocabulary=vocabulary,
        sequences=lambda: rows.sequences.take(ids).to_pylist())  # whole sequences (truncation comes after)

    tables, noise_info = {}, {}
    truncate = options.max_length is not None and options.too_long == "truncate"
    too_long_splits = {"truncated": dict.fromkeys(col.SPLITS, 0), "kept_whole": dict.fromkeys(col.SPLITS, 0),
                       "dropped": dropped_per_split}
    for code, split in enumerate(col.SPLITS):
        chosen = np.flatnonzero(codes == code)
        select, clean = ids[chosen], labels[chosen]
        base = rows.lengths[select]
        if truncate:  # after the split, so cutting never changes it; dev/test stay whole
            longer = int((base > options.max_length).sum())
            too_long_splits["truncated" if split == "train" else "kept_whole"][split] = longer
            if split == "train":
                base = np.minimum(base, options.max_length)
        starts, ends, observed = np.zeros_like(base), base, clean
        if split == "train":
            starts, ends = noise.crop_windows(base, options.crop_noise, options.crop_fraction,
                                              np.random.default_rng([noise_seed, CROP_STREAM]))
            confusable = _confusable(rows, select, base, clean, vocabulary, options)
            observed, pair_targets = noise.corrupt_labels(
                clean, len(vocabulary), options.label_noise, options.label_noise_kind,
                np.random.default_rng([noise_seed, LABEL_STREAM]), None if confusable is None else confusable[0])
            noise_info = describe_noise(options, noise_seed, base, starts, ends, clean, observed, pair_targets)
            if confusable is not None:
                noise_info["label"]["confusable"] = similarity.manifest_entry(vocabulary, *confusable)
        tables[split] = _split_table(rows, select, clean, observed, starts, ends, vocab, accessions)

    novel_entry = None
    if options.novel_families is not None:
        tables[col.NOVEL] = novel.novel_table(rows.names.take(novel_ids), rows.sequences.take(novel_ids),
                                              rows.accessions.take(novel_ids), rows.family_names,
                                              rows.family[novel_ids], rows.lengths[novel_ids])
        novel_entry = novel.manifest_entry(options.novel_families, split_seed, rows.family_names, rows.family[novel_ids])
    summary = PrepareSummary(
        out_dir=Path(out_dir), num_families=len(vocabulary), novel=novel_entry,
        counts={s: t.num_rows for s, t in tables.items()},
        too_long_policy=options.too_long, max_length=options.max_length, min_family_size=options.min_family_size,
        too_long_splits=too_long_splits, noise=noise_info, split=split_info, **filtered,
        lengths={s: length_stats(t[col.LENGTH].to_numpy()) for s, t in tables.items()},
        long_kept=sum(int((t[col.LENGTH].to_numpy() > LONG_SEQUENCE).sum()) for t in tables.values()),
    )
    label_entries = [{col.FAMILY_ID: f, col.FAMILY_ACCESSION: a} for f, a in zip(vocabulary, accessions.to_pylist())]
    manifest = summary.manifest(sources, seed=options.seed, version=__version__,
                                family_counts=family_counts(codes, labels, vocabulary))
    store.write_dataset(out_dir, tables, label_entries, manifest, overwrite=overwrite)
    return summary


def _confusable(rows: _Rows, select: np.ndarray, lengths: np.ndarray, clean: np.ndarray, vocabulary: list[str],
                options: PrepareOptions) -> tuple[np.ndarray, np.ndarray] | None:
    """``(targets, similarity)`` of confusable label noise from the training domains as the model would see them
    without cropping (truncated under ``--too-long truncate``), or None for the other kinds."""
    if options.label_noise_kind != "confusable" or options.label_noise == 0:
        return None
    if len(vocabulary) < 2:
        raise ConfigError("label noise needs at least 2 families")
    sequences = rows.sequences.take(select).to_pylist()
    if (lengths < rows.lengths[select]).any():
        sequences = [seq[:n] for seq, n in zip(sequences, lengths.tolist())]
    return similarity.confusable_map(sequences, clean, len(vocabulary))
