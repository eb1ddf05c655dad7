"""Read delimited tables (TSV/CSV, ProtCNN shards) with pyarrow's multi-threaded CSV reader.

Required columns: ``family_id`` and ``sequence``; optional ``sequence_name`` and ``family_accession``
(ProtCNN shards must have ``sequence_name`` too). Other columns are never read, in particular
ProtCNN's ``aligned_sequence``, which leaks the label. The delimiter is a tab when the header line
holds one, else a comma. Files are read as UTF-8, or as latin-1 when they are not valid UTF-8.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from protlc import columns as col
from protlc.data.readers import ProgressCallback, RecordBlock, clean_sequences, open_text
from protlc.errors import InputError, where

REQUIRED = (col.FAMILY_ID, col.SEQUENCE)
OPTIONAL = (col.SEQUENCE_NAME, col.FAMILY_ACCESSION)


def _header(path: Path) -> tuple[list[str], str]:
    with open_text(path) as fh:
        for line in fh:
            if line.strip():
                line = line.lstrip("\ufeff").rstrip("\r\n")
                delimiter = "\t" if "\t" in line else ","
                return [name.strip() for name in next(csv.reader([line], delimiter=delimiter))], delimiter
    raise InputError(f"{path}: the file is empty")


def _bad_row_line(path: Path, delimiter: str, width: int) -> str:
    """Locate the first line whose field count differs from the header's (error path only)."""
    with open_text(path) as fh:
        for line_no, row in enumerate(csv.reader(fh, delimiter=delimiter), start=1):
            if row and len(row) != width:
                return f"{where(path, line=line_no)}: expected {width} fields, found {len(row)}"
    return f"{path}: malformed table"


def read_table(
    path: Path, *, split: str | None = None, protcnn: bool = False, on_progress: ProgressCallback | None = None
) -> Iterator[RecordBlock]:
    """Read one TSV/CSV file (or ProtCNN shard) as a single record block.

    Raises:
        InputError: empty file, missing required columns, malformed rows (naming file and line).
    """
    path = Path(path)
    header, delimiter = _header(path)
    required = REQUIRED + ((col.SEQUENCE_NAME,) if protcnn else ())
    missing = [name for name in required if name not in header]
    if missing:
        raise InputError(
            f"{where(path, line=1)}: missing required column(s) {', '.join(missing)} "
            f"(found: {', '.join(header) or 'none'}; delimiter {delimiter!r})"
        )
    wanted = [name for name in dict.fromkeys(required + OPTIONAL) if name in header]
    repeated = [name for name in wanted if header.count(name) > 1]
    if repeated:
        raise InputError(f"{where(path, line=1)}: column {repeated[0]!r} appears {header.count(repeated[0])} times in the header")
    table = None
    for encoding in ("utf8", "latin1"):
        try:
            table = pa_csv.read_csv(
                path,
                read_options=pa_csv.ReadOptions(encoding=encoding, block_size=1 << 24),
                parse_options=pa_csv.ParseOptions(delimiter=delimiter),
                convert_options=pa_csv.ConvertOptions(
                    include_columns=wanted,
                    column_types={name: pa.string() for name in wanted},
                    strings_can_be_null=False,
                ),
            )
            break
        except pa.ArrowInvalid as exc:
            if "UTF8" in str(exc) and encoding == "utf8":
                continue
            if "columns" in str(exc):
                raise InputError(_bad_row_line(path, delimiter, len(header))) from None
            raise InputError(f"{path}: cannot read the table ({str(exc).splitlines()[0]})") from None
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
