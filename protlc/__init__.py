"""protlc: protein family classification and variant fitness scoring robust to noisy labels.

The public API is small and grouped by task; the CLI (`protlc ...`) is a thin layer over it.
"""

__version__ = "0.1.0"
