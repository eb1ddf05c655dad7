"""Streamed tables: read CSV/TSV/Parquet/FASTA in chunks, write CSV/Parquet in chunks atomically.

Used by predict, audit and score so that inputs of any size run in constant memory.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from protlc import columns as col
from protlc.alphabet import ALPHABET
from protlc.atomic import atomic_path
from protlc.errors import InputError

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": "\t"}
FASTA_SUFFIXES = {".fasta", ".fa", ".faa", ".fas"}


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    return suffixes[-1] if suffixes else ""


def iter_table_chunks(path: str | Path, chunk_size: int = 100_000) -> Iterator[pd.DataFrame]:
    """Yield DataFrames of at most ``chunk_size`` rows from a CSV, TSV (optionally .gz) or Parquet file.

    The index of each chunk continues the row numbering of the file (0-based data rows), so error
    messages can name the row.

    Raises:
        InputError: missing, empty or unreadable file; unknown extension.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file does not exist")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    suffix = _suffix(path)
    start = 0
    if suffix == ".parquet":
        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:
            raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
        for batch in pf.iter_batches(batch_size=chunk_size):
            df = batch.to_pandas()
            df.index = pd.RangeIndex(start, start + len(df))
            start += len(df)
            yield df
        return
    if suffix not in TABLE_SUFFIXES:
        raise InputError(f"{path}: unknown table type {suffix!r}; use .csv, .tsv or .parquet")
    try:
        reader = pd.read_csv(path, sep=TABLE_SUFFIXES[suffix], chunksize=chunk_size, dtype=str,
                             keep_default_na=False, compression="infer")
        for df in reader:
            df.index = pd.RangeIndex(start, start + len(df))
            start += len(df)
            yield df
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: file has no header or rows") from None
    except pd.errors.ParserError as exc:
        raise InputError(f"{path}: malformed table ({str(exc).strip().splitlines()[-1]})") from None


def _iter_fasta(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    from Bio.SeqIO.FastaIO import SimpleFastaParser

    opener = gzip.open if path.suffix == ".gz" else open
    names, seqs = [], []
    with opener(path, "rt", encoding="latin-1") as handle:
        for title, seq in SimpleFastaParser(handle):
            names.append(title.split()[0] if title.strip() else f"record_{len(names) + 1}")
            seqs.append(seq)
            if len(seqs) == chunk_size:
                yield pd.DataFrame({col.SEQUENCE_NAME: names, col.SEQUENCE: seqs})
                names, seqs = [], []
    if seqs:
        yield pd.DataFrame({col.SEQUENCE_NAME: names, col.SEQUENCE: seqs})


def iter_sequence_chunks(path: str | Path, chunk_size: int = 50_000, max_length: int | None = None
                         ) -> Iterator[pd.DataFrame]:
    """Yield validated ``(sequence_name, sequence)`` chunks from FASTA, CSV/TSV or Parquet.

    Tables need a ``sequence`` column; ``sequence_name`` is optional (row numbers are used).

    Raises:
        InputError: naming the file and record for an empty, invalid or over-long sequence.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file does not exist")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    with open(path, "rb") as handle:
        fasta = _suffix(path) in FASTA_SUFFIXES or handle.read(1) == b">"
    chunks = _iter_fasta(path, chunk_size) if fasta else iter_table_chunks(path, chunk_size)
    seen_any = False
    for number, df in enumerate(chunks):
        if col.SEQUENCE not in df:
            raise InputError(f"{path}: no {col.SEQUENCE!r} column (columns: {', '.join(map(str, df.columns))})")
        if col.SEQUENCE_NAME not in df:
            df[col.SEQUENCE_NAME] = [f"row_{i + 1}" for i in df.index]
        df = df[[col.SEQUENCE_NAME, col.SEQUENCE]].copy()
        df[col.SEQUENCE] = [ALPHABET.clean(str(s)) for s in df[col.SEQUENCE]]
        for name, seq in zip(df[col.SEQUENCE_NAME], df[col.SEQUENCE]):
            problem = ALPHABET.problem(seq)
            if problem is None and max_length is not None and len(seq) > max_length:
                problem = f"sequence of {len(seq)} residues is longer than --max-length {max_length}"
            if problem is not None:
                raise InputError(f"{path}, record {name!r}: {problem}")
        seen_any = seen_any or len(df) > 0
        yield df
    if not seen_any:
        raise InputError(f"{path}: no sequences found")


class ChunkWriter:
    """Write DataFrame chunks to ``.csv``/``.tsv``/``.parquet`` atomically (temp file, rename on close).

    Use as a context manager; on an exception nothing is left at ``path``. No index column is written.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.suffix = _suffix(self.path)
        if self.suffix not in (".csv", ".tsv", ".parquet"):
            raise InputError(f"{self.path}: output must end in .csv, .tsv or .parquet")
        self._ctx = atomic_path(self.path)
        self._writer = None
        self.rows = 0

    def __enter__(self) -> "ChunkWriter":
        self._tmp = self._ctx.__enter__()
        return self

    def write(self, df: pd.DataFrame) -> None:
        if self.suffix == ".parquet":
            table = pa.Table.from_pandas(df, preserve_index=False)
            if self._writer is None:
                self._writer = pq.ParquetWriter(self._tmp, table.schema)
            self._writer.write_table(table.cast(self._writer.schema))
        else:
            df.to_csv(self._tmp, sep="," if self.suffix == ".csv" else "\t", index=False,
                      header=self.rows == 0, mode="w" if self.rows == 0 else "a")
        self.rows += len(df)

    def __exit__(self, exc_type, exc, tb):
        if self._writer is not None:
            self._writer.close()
        if exc_type is None and self.rows == 0 and self.suffix == ".parquet":
            pq.write_table(pa.table({}), self._tmp)
        return self._ctx.__exit__(exc_type, exc, tb)
