"""The only exceptions users see. The CLI turns each into one line on stderr and a non-zero exit."""

from __future__ import annotations

import os


class ProtlcError(Exception):
    """Base class: a problem the user can fix (bad input, bad option, wrong checkpoint)."""

    exit_code = 1


class InputError(ProtlcError):
    """A data file is unreadable or holds a bad record. Message names file, record/line and the fix."""

    exit_code = 2


class ConfigError(ProtlcError):
    """An option or config value is out of range or inconsistent."""

    exit_code = 2


class CheckpointError(ProtlcError):
    """A checkpoint is missing, unsafe to load, or made for another task."""

    exit_code = 3


class TrainingInterrupted(ProtlcError):
    """Training was stopped by Ctrl-C or SIGTERM; ``checkpoints/last.ckpt`` holds the last finished epoch."""

    exit_code = 130


class Terminated(BaseException):
    """SIGTERM stopped ``prepare``/``predict``/``audit``/``score``: raised where the signal arrives, like
    KeyboardInterrupt for Ctrl-C, so that unfinished outputs' temporary files are removed on the way
    out. Not an Exception, so that no ``except Exception`` swallows it."""

    exit_code = 143  # 128 + SIGTERM, what the shell reports for a process that SIGTERM ended


def where(path, record=None, line=None) -> str:
    """Format a location for error messages: ``file.tsv, line 12`` or ``seed.sto, record 'PF00001'``."""
    parts = [str(path)]
    if record is not None:
        parts.append(f"record {record!r}" if isinstance(record, str) else f"record {record}")
    if line is not None:
        parts.append(f"line {line}")
    return ", ".join(parts)


def os_error_line(exc: OSError) -> str:
    """One line for a system error: ``out/scores.csv: No space left on device``.

    The reason is the system's own text for the error number (pyarrow wraps it in longer text); the path
    is the file the error names (an output being written, see :mod:`protlc.atomic`), when it names one.
    """
    reason = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc) or type(exc).__name__)
    return f"{exc.filename}: {reason}" if exc.filename is not None else reason
