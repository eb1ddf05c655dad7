"""Mutant strings and full sequences as an ``(n, L)`` byte matrix, without building a string per row.

Scoring's hot path (docs/method.md §6): a chunk of mutant strings is split into tokens in one pass
(``sep.join(...).split(sep)``), the distinct tokens are looked up once each in the
:class:`~protlc.dms.mutations.MutantApplier`'s cache of validated ``(position0, mutant letter)``, and the
substitutions are written into copies of the encoded wild type with one fancy-indexed assignment. Only
rows with a problem (bad token, repeated position, a wild-type marker such as ``WT``) go through the
applier's row-by-row :meth:`~protlc.dms.mutations.MutantApplier.check`, so their messages are exactly
the ones of :func:`~protlc.dms.mutations.apply_many`.

Rows are ASCII bytes (``A``, ``C``, ..., ``*``); :meth:`protlc.alphabet.Alphabet.encode_bytes` turns a
matrix into token ids.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from protlc.dms.mutations import MutantApplier


def encode_mutants(applier: MutantApplier, mutants: Sequence) -> tuple[np.ndarray, list[tuple[int, str, str]]]:
    """Apply every mutant string of ``mutants`` to the applier's wild type.

    Returns:
        ``(matrix, errors)``: ``matrix[i]`` is the mutated sequence of row ``i`` as ASCII bytes ``(n, L)``
        uint8 (the wild type for an invalid row); ``errors`` lists ``(row, token, reason)`` of the invalid
        rows in row order, as :func:`protlc.dms.mutations.apply_many` reports them.
    """
    wt = np.frombuffer(applier.wt.encode("ascii"), dtype=np.uint8)
    n, length, sep = len(mutants), len(wt), applier.separator
    matrix = np.tile(wt, (n, 1))
    if n == 0:
        return matrix, []
    texts = [m if isinstance(m, str) else "" for m in mutants]
    counts = np.fromiter((m.count(sep) for m in texts), dtype=np.int64, count=n) + 1
    codes, uniques = pd.factorize(np.array(sep.join(texts).split(sep), dtype=object))
    hits = [applier.lookup(token) for token in uniques]
    position = np.array([-1 if isinstance(h, str) else h[0] for h in hits], dtype=np.int64)[codes]
    letter = np.array([0 if isinstance(h, str) else h[1] for h in hits], dtype=np.uint8)[codes]
    row = np.repeat(np.arange(n), counts)
    suspect = np.zeros(n, dtype=bool)
    suspect[row[position < 0]] = True  # a bad token, or a marker such as WT / _wt (checked row by row below)
    valid = position >= 0
    key = np.sort(row[valid] * length + position[valid])
    suspect[key[1:][key[1:] == key[:-1]] // length] = True  # the same position twice
    good = ~suspect[row]
    matrix[row[good], position[good]] = letter[good]
    errors = []
    for i in np.flatnonzero(suspect).tolist():
        sequence, error = applier.check(mutants[i])
        if error is None:
            matrix[i] = np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)
        else:
            errors.append((i, *error))
    return matrix, errors


def distinct_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, uniques)``: the distinct rows of ``matrix`` in order of first appearance and, per row, the
    index of its distinct row (``uniques[codes] == matrix``), like :func:`pandas.factorize`."""
    if len(matrix) == 0:
        return np.zeros(0, dtype=np.int64), matrix
    # each row as one fixed-width byte string (no NUL bytes in ASCII residues, so none is truncated)
    codes, uniques = pd.factorize(np.ascontiguousarray(matrix).view(f"S{matrix.shape[1]}").ravel())
    return codes.astype(np.int64), np.frombuffer(b"".join(uniques), dtype=np.uint8).reshape(len(uniques), -1)
