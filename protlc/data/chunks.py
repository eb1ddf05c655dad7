"""Streamed sequences and outputs: read FASTA/CSV/TSV/Parquet in validated chunks, write CSV/Parquet atomically.

Used by predict, audit and score so that inputs of any size run in constant memory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from protlc import columns as col
from protlc.atomic import atomic_path, name_output
from protlc.data import tables
from protlc.data.fasta import iter_fasta
from protlc.data.records import clean_sequences, first_problem, open_text
from protlc.errors import ConfigError, InputError


def _fasta_chunks(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    names, sequences, start = [], [], 0
    for entry in iter_fasta(path):
        names.append(entry.header.split()[0] if entry.header else f"record_{start + len(names) + 1}")
        sequences.append(entry.sequence)
        if len(sequences) == chunk_size:
            yield pd.DataFrame({col.SEQUENCE_NAME: names, col.SEQUENCE: sequences},
                               index=pd.RangeIndex(start, start + len(names)))
            start += len(names)
            names, sequences = [], []
    if sequences:
        yield pd.DataFrame({col.SEQUENCE_NAME: names, col.SEQUENCE: sequences},
                           index=pd.RangeIndex(start, start + len(names)))


def is_fasta(path: Path) -> bool:
    """FASTA by name (``.fasta``, ``.fa``, ...) or by content (the first character is ``>``)."""
    if tables.suffix(path) in tables.FASTA_SUFFIXES:
        return True
    if tables.is_parquet(path):
        return False
    with open_text(path) as handle:
        return handle.read(64).lstrip().startswith(">")


def iter_sequence_chunks(path: str | Path, chunk_size: int = 50_000, max_length: int | None = None
                         ) -> Iterator[pd.DataFrame]:
    """Yield validated ``(sequence_name, sequence)`` chunks from FASTA, CSV/TSV or Parquet.

    Tables need a ``sequence`` column; ``sequence_name`` is optional (row numbers are used). Sequences
    are cleaned and validated exactly as ``protlc prepare`` does (:mod:`protlc.data.records`).

    Raises:
        InputError: naming the file and record for an empty, invalid or over-long sequence.
    """
    path = tables.check_input_file(Path(path))
    chunks = _fasta_chunks(path, chunk_size) if is_fasta(path) else tables.iter_table_chunks(path, chunk_size)
    seen_any = False
    for df in chunks:
        if col.SEQUENCE not in df:
            raise InputError(f"{path}: no {col.SEQUENCE!r} column (columns: {', '.join(map(str, df.columns))})")
        if col.SEQUENCE_NAME not in df:
            df[col.SEQUENCE_NAME] = [f"row_{i + 1}" for i in df.index]
        df = df[[col.SEQUENCE_NAME, col.SEQUENCE]].copy()
        sequences = clean_sequences(pa.array(df[col.SEQUENCE].astype(str).tolist(), pa.string()))
        bad = first_problem(sequences)
        if bad is None and max_length is not None:
            lengths = pc.utf8_length(sequences).to_numpy(zero_copy_only=False)
            longer = np.flatnonzero(lengths > max_length)
            if len(longer):
                row = int(longer[0])
                bad = (row, f"sequence of {int(lengths[row])} residues is longer than --max-length {max_length}")
        if bad is not None:
            raise InputError(f"{path}, record {df[col.SEQUENCE_NAME].iloc[bad[0]]!r}: {bad[1]}")
        df[col.SEQUENCE] = sequences.to_pylist()
        seen_any = seen_any or len(df) > 0
        yield df
    if not seen_any:
        raise InputError(f"{path}: no sequences found")


def check_not_input(out: str | Path, *inputs: str | Path | None) -> None:
    """Refuse an output path that is one of the inputs (the same file, also through links): the output
    is renamed onto its path at the end and would replace the input.

    Raises:
        ConfigError: naming both paths.
    """
    out = Path(out)
    for source in inputs:
        if source is None:
            continue
        source = Path(source)
        same = out.resolve() == source.resolve()
        if not same and out.exists() and source.exists():
            try:
                same = os.path.samefile(out, source)
            except OSError:
                pass
        if same:
            raise ConfigError(f"--out {out} is the input {source}; writing it would replace the input: "
                              "choose another output file")


class ChunkWriter:
    """Write DataFrame chunks to ``.csv``/``.tsv``/``.parquet`` atomically (temp file, rename on close).

    Use as a context manager; on an exception nothing is left at ``path``. No index column is written.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.suffix = tables.suffix(self.path)
        if self.suffix not in tables.OUTPUT_SUFFIXES:
            raise InputError(f"{self.path}: output must end in .csv, .tsv or .parquet")
        self._ctx = atomic_path(self.path)
        self._writer = None
        self.rows = 0

    def __enter__(self) -> "ChunkWriter":
        self._tmp = self._ctx.__enter__()
        return self

    def write(self, df: pd.DataFrame) -> None:
        try:
            if self.suffix == ".parquet":
                table = pa.Table.from_pandas(df, preserve_index=False)
                if self._writer is None:
                    self._writer = pq.ParquetWriter(self._tmp, table.schema)
                self._writer.write_table(table.cast(self._writer.schema))
            else:
                df.to_csv(self._tmp, sep="," if self.suffix == ".csv" else "\t", index=False,
                          header=self.rows == 0, mode="w" if self.rows == 0 else "a")
        except OSError as exc:  # a full disk: the error names this output, whatever else is open
            name_output(exc, self.path)
            raise
        self.rows += len(df)

    def __exit__(self, exc_type, exc, tb):
        failed = None  # closing writes the Parquet footer: a full disk can fail it too
        try:
            if self._writer is not None:
                self._writer.close()
            if exc_type is None and self.rows == 0 and self.suffix == ".parquet":
                pq.write_table(pa.table({}), self._tmp)
        except BaseException as error:
            name_output(error, self.path)
            if exc_type is None:
                failed = exc_type, exc, tb = type(error), error, error.__traceback__
        suppressed = self._ctx.__exit__(exc_type, exc, tb)  # removes the temporary file on an error
        if failed is not None:
            raise failed[1]
        return suppressed
