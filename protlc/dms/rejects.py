"""Rejected rows, shared by ``train-dms --skip-invalid`` (``RUN_DIR/rejects.csv``) and ``score --skip-invalid``
(``OUT.rejects.csv``): one row per invalid input row with its 0-based row number, its variant text, the
offending token and the reason, written atomically (a header-only file when nothing was rejected)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import pandas as pd

from protlc.columns import REJECT_COLUMNS
from protlc.data.chunks import ChunkWriter

REJECTS_FILE = "rejects.csv"  # in a train-dms run directory


class Reject(NamedTuple):
    row: int
    variant: str
    token: str
    reason: str


def reject_frame(rejects: Sequence[Reject]) -> pd.DataFrame:
    return pd.DataFrame([tuple(r) for r in rejects], columns=list(REJECT_COLUMNS))


class RejectWriter(ChunkWriter):
    """:class:`~protlc.data.chunks.ChunkWriter` of :class:`Reject` rows; the file gets its header even when
    no row was rejected."""

    def write(self, rejects) -> None:
        super().write(rejects if isinstance(rejects, pd.DataFrame) else reject_frame(rejects))

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and self.rows == 0:
            super().write(reject_frame([]))
        return super().__exit__(exc_type, exc, tb)


def write_rejects(path: str | Path, rejects: Sequence[Reject]) -> Path:
    """Write ``rejects`` to ``path`` (CSV/TSV/Parquet by suffix) atomically; returns the path."""
    with RejectWriter(path) as writer:
        writer.write(rejects)
    return Path(path)


def skipped_message(count: int, path: str | Path) -> str:
    """The one line both commands print on stderr after skipping invalid rows."""
    return f"skipped {count:,} invalid row{'' if count == 1 else 's'} (row, variant, token, reason in {path})"
