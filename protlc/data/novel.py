"""Novel families: whole families kept out of train/dev/test and written as a separate ``novel`` split.

``protlc prepare --novel-families K`` draws K of the families left after filtering (uniformly, without
replacement, from the family ids in sorted order, with the split seed's own stream
``default_rng([split_seed, 5])``); ``--novel-families ID,ID,...`` names them. Every domain of a novel
family goes to ``novel.parquet`` (whatever split a ProtCNN shard gave it), none to train/dev/test, and
``labels.json`` lists only the known families, so a model trained on the dataset has no class for them:
they measure how well the model says "none of my families" (:mod:`protlc.unknown`).

Columns are those of every split (:mod:`protlc.data.store`), with ``label = clean_label = -1``
(:data:`NOVEL_LABEL`: the domain has no class in ``labels.json``), ``family_id`` and ``clean_family_id``
the true family id, ``family_accession`` its accession, ``is_noisy`` false and the whole sequence
(``crop_start = 0``, ``crop_end = length``; never truncated, like dev and test). The manifest's ``novel``
entry names the families, how they were chosen and their domain counts.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from protlc import columns as col
from protlc.errors import ConfigError, InputError

NOVEL_LABEL = -1
NOVEL_STREAM = 5  # default_rng([split_seed, NOVEL_STREAM]); prepare's other streams are 1-4


def parse_novel_families(text: str | int | tuple | list | None) -> int | tuple[str, ...] | None:
    """``"10"`` -> 10 (draw that many); ``"PF1,PF2"`` -> the named families; None/"" -> None.

    Raises:
        ConfigError: a count below 1, an empty name, or a name given twice.
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if isinstance(text, int) or (isinstance(text, str) and text.strip().lstrip("-").isdigit()):
        count = int(text)
        if count < 1:
            raise ConfigError(f"--novel-families {text}: give a number of families >= 1 or a comma-separated list of family ids")
        return count
    names = tuple(n.strip() for n in (text.split(",") if isinstance(text, str) else text))
    if not all(names):
        raise ConfigError(f"--novel-families {text!r}: an empty family id in the list")
    if len(set(names)) < len(names):
        twice = sorted({n for n in names if names.count(n) > 1})[0]
        raise ConfigError(f"--novel-families {text!r}: family {twice!r} is named twice")
    return names


def choose_novel(family_names: list[str], present: np.ndarray, spec: int | tuple[str, ...], split_seed: int,
                 inputs: str) -> np.ndarray:
    """Codes (indices into ``family_names``) of the novel families, in sorted family-id order.

    Args:
        family_names: every family id read; present: codes of the families left after filtering.
        inputs: the input paths, for messages.
    Raises:
        InputError: a named family is not in the (filtered) input, or fewer than 2 known families would remain.
    """
    present = np.unique(present)
    order = present[np.argsort([family_names[c] for c in present], kind="stable")]
    if isinstance(spec, int):
        if spec > order.size - 2:
            raise InputError(f"{inputs}: --novel-families {spec} would leave {order.size - spec} known "
                             f"famil{'y' if order.size - spec == 1 else 'ies'} of {order.size}; at least 2 must stay known")
        rng = np.random.default_rng([split_seed, NOVEL_STREAM])
        return np.sort(rng.choice(order, size=spec, replace=False)) if spec else order[:0]
    code_of = {family_names[c]: c for c in order}
    missing = [name for name in spec if name not in code_of]
    if missing:
        raise InputError(f"{inputs}: --novel-families names {missing[0]!r}, which is not a family of the input "
                         f"(after --min-family-size/--max-length filtering)")
    if order.size - len(spec) < 2:
        raise InputError(f"{inputs}: --novel-families leaves {order.size - len(spec)} known families of {order.size}; "
                         "at least 2 must stay known")
    return np.array(sorted(code_of[name] for name in spec), dtype=np.int64)


def hold_out(family_names: list[str], family: np.ndarray, ids: np.ndarray, spec, split_seed: int,
             inputs: str) -> tuple[np.ndarray, np.ndarray]:
    """Split the kept rows ``ids`` into ``(known rows, novel rows)`` (both ascending); ``family[row]`` is a
    code into ``family_names``; ``spec`` as :func:`parse_novel_families` accepts it."""
    held_out = choose_novel(family_names, family[ids], parse_novel_families(spec), split_seed, inputs)
    is_novel = np.isin(family[ids], held_out)
    return ids[~is_novel], ids[is_novel]


def novel_table(names: pa.ChunkedArray, sequences: pa.ChunkedArray, accessions: pa.ChunkedArray,
                family_names: list[str], family: np.ndarray, lengths: np.ndarray) -> pa.Table:
    """The ``novel`` split: whole sequences, label -1, the true family (``family_names[family]``) in both
    family columns."""
    n = len(lengths)
    label = pa.array(np.full(n, NOVEL_LABEL, dtype=np.int32))
    family_ids = pa.array(family_names, pa.string()).take(pa.array(family, pa.int64()))
    return pa.table({
        col.SEQUENCE_NAME: names, col.SEQUENCE: sequences, col.LABEL: label, col.FAMILY_ID: family_ids,
        col.FAMILY_ACCESSION: accessions, col.CLEAN_LABEL: label, col.CLEAN_FAMILY_ID: family_ids,
        col.IS_NOISY: pa.array(np.zeros(n, dtype=bool)), col.CROP_START: pa.array(np.zeros(n, dtype=np.int32)),
        col.CROP_END: pa.array(lengths.astype(np.int32)), col.LENGTH: pa.array(lengths.astype(np.int32)),
    })


def manifest_entry(spec, split_seed: int, family_names: list[str], family: np.ndarray) -> dict:
    """The manifest's ``novel`` entry; ``family`` holds the novel rows' family codes."""
    drawn = isinstance(parse_novel_families(spec), int)
    codes, counts = np.unique(family, return_counts=True)
    count_of = {family_names[c]: int(n) for c, n in zip(codes.tolist(), counts.tolist())}
    families = sorted(count_of)
    return {
        "split": col.NOVEL, "label": NOVEL_LABEL, "selection": "random" if drawn else "given",
        "seed": split_seed if drawn else None, "stream": NOVEL_STREAM if drawn else None,
        "num_families": len(families), "families": families, "domains": int(counts.sum()),
        "family_counts": {f: count_of[f] for f in families},
    }
