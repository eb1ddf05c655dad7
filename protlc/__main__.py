"""``python -m protlc ...`` is the same as the ``protlc`` command."""

from protlc.cli import main

main()
