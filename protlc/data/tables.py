"""The one table reader: CSV/TSV (optionally gzipped) and Parquet, for prepare, predict, score and DMS tables.

Text tables: the delimiter is a tab when the first non-blank line (the header) holds one, else a comma,
whatever the file is called; gzip is recognised by its magic bytes. Every column is read as a string
(empty cells stay ``""``), so numbers are parsed, and checked, by the caller that needs them. Files are
read as UTF-8, or as latin-1 when they are not valid UTF-8. Parquet files keep their own column types.

Errors are one :class:`InputError` line naming the file and, where it is known, the line.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from protlc.data.records import is_gzipped, open_text
from protlc.errors import InputError, where

COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")
PARQUET_SUFFIXES = (".parquet", ".pq")
FASTA_SUFFIXES = (".fasta", ".fa", ".faa", ".fas")
TEXT_SUFFIXES = (".csv", ".tsv", ".tab", ".txt")
OUTPUT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".parquet": None}
_BLOCK_BYTES = 1 << 24


def suffix(path: Path) -> str:
    """The file's type suffix, lower-case, ignoring a compression suffix (``x.tsv.gz`` -> ``.tsv``)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in COMPRESSION_SUFFIXES:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def is_parquet(path: Path) -> bool:
    return suffix(path) in PARQUET_SUFFIXES


def check_input_file(path: Path) -> Path:
    """``path`` as a Path, checked to be a non-empty readable file.

    Raises:
        InputError: missing, a directory, or empty.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a file")
    if not path.is_file():
        raise InputError(f"{path}: file does not exist")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    return path


def read_header(path: Path) -> tuple[list[str], str]:
    """``(column names, delimiter)`` of a text table, from its first non-blank line.

    Raises:
        InputError: no header line, or an unreadable (e.g. truncated gzip) file.
    """
    try:
        with open_text(path) as fh:
            for line in fh:
                if line.strip():
                    line = line.lstrip("\ufeff").rstrip("\r\n")
                    delimiter = "\t" if "\t" in line else ","
                    return [name.strip() for name in next(csv.reader([line], delimiter=delimiter))], delimiter
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read the file ({_reason(exc)})") from None
    raise InputError(f"{path}: the file is empty (no header line)")


def columns_of(path: Path) -> list[str]:
    """Column names of a text or Parquet table."""
    if is_parquet(path):
        return list(_parquet(path).schema_arrow.names)
    return read_header(path)[0]


def iter_table_batches(path: str | Path, columns: list[str] | None = None,
                       batch_rows: int | None = None) -> Iterator[pa.Table]:
    """Stream a table as pyarrow Tables of at most ``batch_rows`` rows, in file order.

    Args:
        columns: the columns to read (all when None); each must exist, exactly once.

    Raises:
        InputError: missing/empty/unreadable file, missing or repeated column, a row with the wrong number
            of fields (naming its line), a truncated or corrupt compressed file.
    """
    path = check_input_file(path)
    if is_parquet(path):
        parquet = _parquet(path)
        _check_columns(path, list(parquet.schema_arrow.names), columns)
        try:
            for batch in parquet.iter_batches(batch_size=batch_rows or 65536, columns=columns):
                yield pa.Table.from_batches([batch])
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"{path}: cannot read the Parquet file ({_reason(exc)})") from None
        return
    header, delimiter = read_header(path)
    _check_columns(path, header, columns)
    for encoding in ("utf8", "latin1"):
        yielded = False
        try:
            with _open_stream(path) as source:
                for batch in pa_csv.open_csv(source, **_csv_options(header, delimiter, columns, encoding)):
                    for start in range(0, batch.num_rows, batch_rows or max(batch.num_rows, 1)):
                        yielded = True
                        yield pa.Table.from_batches([batch.slice(start, batch_rows or batch.num_rows)])
            return
        except (OSError, EOFError, pa.ArrowException) as exc:
            if _retry_latin1(exc, encoding) and not yielded:
                continue
            raise _table_error(path, delimiter, header, exc) from None


def read_table(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """The whole table as one pyarrow Table, parsed with all cores (see :func:`iter_table_batches`)."""
    path = check_input_file(path)
    if is_parquet(path):
        batches = list(iter_table_batches(path, columns))
        return pa.concat_tables(batches) if batches else _parquet(path).schema_arrow.empty_table()
    header, delimiter = read_header(path)
    _check_columns(path, header, columns)
    for encoding in ("utf8", "latin1"):
        try:
            with _open_stream(path) as source:
                return pa_csv.read_csv(source, **_csv_options(header, delimiter, columns, encoding))
        except (OSError, EOFError, pa.ArrowException) as exc:
            if _retry_latin1(exc, encoding):
                continue
            raise _table_error(path, delimiter, header, exc) from None
    raise AssertionError("unreachable")


def iter_table_chunks(path: str | Path, chunk_size: int = 100_000) -> Iterator[pd.DataFrame]:
    """DataFrames of at most ``chunk_size`` rows; each chunk's index continues the 0-based data-row numbering."""
    start = 0
    for table in iter_table_batches(path, batch_rows=chunk_size):
        frame = table.to_pandas()
        frame.index = pd.RangeIndex(start, start + len(frame))
        start += len(frame)
        yield frame


def read_frame(path: str | Path) -> pd.DataFrame:
    """The whole table as a DataFrame with index ``0..n-1`` (the numbering of split files)."""
    return read_table(path).to_pandas()


def _parquet(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise InputError(f"{path}: not a readable Parquet file ({_reason(exc)})") from None


def _open_stream(path: Path):
    raw = pa.OSFile(str(path))
    return pa.CompressedInputStream(raw, "gzip") if is_gzipped(path) else raw


def _csv_options(header: list[str], delimiter: str, columns: list[str] | None, encoding: str) -> dict:
    return {
        "read_options": pa_csv.ReadOptions(encoding=encoding, block_size=_BLOCK_BYTES),
        "parse_options": pa_csv.ParseOptions(delimiter=delimiter),
        "convert_options": pa_csv.ConvertOptions(
            include_columns=columns,
            column_types={name: pa.string() for name in header},
            strings_can_be_null=False,
        ),
    }


def _retry_latin1(exc: BaseException, encoding: str) -> bool:
    return encoding == "utf8" and isinstance(exc, pa.ArrowInvalid) and "UTF8" in str(exc)


def _table_error(path: Path, delimiter: str, header: list[str], exc: BaseException) -> InputError:
    if isinstance(exc, pa.ArrowInvalid) and "columns" in str(exc):
        return InputError(_bad_row_line(path, delimiter, len(header)))
    if isinstance(exc, (OSError, EOFError)) and not isinstance(exc, pa.ArrowException):
        return InputError(f"{path}: cannot read the file (truncated or corrupt? {_reason(exc)})")
    return InputError(f"{path}: cannot read the table ({_reason(exc)})")


def _check_columns(path: Path, header: list[str], columns: list[str] | None) -> None:
    if columns is None:
        return
    missing = [name for name in columns if name not in header]
    if missing:
        raise InputError(f"{where(path, line=1)}: missing column(s) {', '.join(missing)} "
                         f"(found: {', '.join(header) or 'none'})")
    repeated = [name for name in columns if header.count(name) > 1]
    if repeated:
        raise InputError(f"{where(path, line=1)}: column {repeated[0]!r} appears {header.count(repeated[0])} times "
                         "in the header")


def _bad_row_line(path: Path, delimiter: str, width: int) -> str:
    """Locate the first line whose field count differs from the header's (error path only)."""
    with open_text(path) as fh:
        for line_no, row in enumerate(csv.reader(fh, delimiter=delimiter), start=1):
            if row and len(row) != width:
                return f"{where(path, line=line_no)}: expected {width} fields, found {len(row)}"
    return f"{path}: malformed table"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
