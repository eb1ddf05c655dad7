"""Read delimited tables (TSV/CSV, ProtCNN shards) with pyarrow's multi-threaded CSV reader.

Required columns: ``family_id`` and ``sequence``; optional ``sequence_name`` and ``family_accession``
(ProtCNN shards must have ``sequence_name`` too). Other columns are never read, in particular
ProtCNN's ``aligned_sequence``, which leaks the label. The delimiter is a tab when the header line
holds one, else a comma. Files are read as UTF-8, or as latin-1 when they are not valid UTF-8.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from protlc import columns as col
from protlc.data import tables
from protlc.data.records import ProgressCallback, RecordBlock, clean_sequences
from protlc.errors import InputError, where

REQUIRED = (col.FAMILY_ID, col.SEQUENCE)
OPTIONAL = (col.SEQUENCE_NAME, col.FAMILY_ACCESSION)


def read_table(
    path: Path, *, split: str | None = None, protcnn: bool = False, on_progress: ProgressCallback | None = None
) -> Iterator[RecordBlock]:
    """Read one TSV/CSV file (or ProtCNN shard) as a single record block.

    Raises:
        InputError: empty file, missing required columns, malformed rows (naming file and line).
    """
    path = Path(path)
    header, delimiter = tables.read_header(path)
    required = REQUIRED + ((col.SEQUENCE_NAME,) if protcnn else ())
    missing = [name for name in required if name not in header]
    if missing:
        raise InputError(
            f"{where(path, line=1)}: missing required column(s) {', '.join(missing)} "
            f"(found: {', '.join(header) or 'none'}; delimiter {delimiter!r})"
        )
    wanted = [name for name in dict.fromkeys(required + OPTIONAL) if name in header]
    table = tables.read_table(path, wanted)
    n = table.num_rows
    positions = np.arange(1, n + 1, dtype=np.int64)
    if col.SEQUENCE_NAME in wanted:
        names = table[col.SEQUENCE_NAME].combine_chunks()
    else:
        names = pc.binary_join_element_wise(pa.scalar(f"{path.name}#"), pa.array(positions).cast(pa.string()), "")
    accessions = (
        pc.if_else(pc.equal(table[col.FAMILY_ACCESSION], ""), pa.scalar(None, pa.string()), table[col.FAMILY_ACCESSION]).combine_chunks()
        if col.FAMILY_ACCESSION in wanted
        else pa.nulls(n, pa.string())
    )
    block = RecordBlock(
        path,
        "tsv",
        names,
        pc.utf8_trim_whitespace(table[col.FAMILY_ID].combine_chunks()),
        accessions,
        clean_sequences(table[col.SEQUENCE].combine_chunks()),
        positions,
        split=split,
    )
    if on_progress:
        on_progress(n)
    yield block
