"""Progress bars of prepare, predict and score: on stderr, drawn only where someone watches.

``progress`` None (the commands' default) draws a bar only when stderr is a terminal, so logs and pipes
get no bar characters; True (``--progress``) draws one anyway, False (``--no-progress``) never. When the
work stops with an error, the bar's line is finished first (wiped on a terminal, ended with a newline
elsewhere), so the CLI's one error line never starts in the middle of a bar.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from tqdm import tqdm


def drawn(progress: bool | None) -> bool:
    """Whether a bar is drawn: ``progress``, or, when None, whether stderr is a terminal."""
    if progress is not None:
        return bool(progress)
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


@contextlib.contextmanager
def progress_bar(progress: bool | None, **options) -> Iterator[tqdm]:
    """A tqdm bar on stderr (``options`` as tqdm's), closed on the way out, also on an error."""
    bar = tqdm(file=sys.stderr, disable=not drawn(progress), **options)
    try:
        yield bar
    except BaseException:
        if not bar.disable:
            bar.leave = not drawn(None)  # a terminal's line is wiped; a pipe's is ended with a newline
            bar.close()
        raise
    bar.close()
