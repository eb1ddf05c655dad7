"""The ``protlc`` command: a thin click layer over the Python API.

Each command lives in its own module of this package and is registered here, explicitly. Every
:class:`~protlc.errors.ProtlcError` becomes one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import sys

import click

from protlc import __version__
from protlc.cli import audit, predict, prepare, reproduce, score, train, train_dms
from protlc.errors import ProtlcError, Terminated, os_error_line


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ProtlcError as exc:
            click.echo(f"protlc: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("protlc: interrupted", err=True)
            sys.exit(130)
        except Terminated:
            click.echo("protlc: terminated by SIGTERM; no output written (its temporary files are removed)", err=True)
            sys.exit(Terminated.exit_code)
        except OSError as exc:  # a full disk, a read-only or vanished directory: the output and the reason
            click.echo(f"protlc: error: {os_error_line(exc)}", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="protlc")
def cli() -> None:
    """protlc: protein family classification and variant fitness scoring, robust to noisy labels."""


COMMANDS = (
    prepare.prepare_command,
    train.train_command,
    predict.predict_command,
    audit.audit_command,
    train_dms.train_dms_command,
    score.score_command,
    reproduce.reproduce_command,
)
for _command in COMMANDS:
    cli.add_command(_command)


def main() -> None:
    cli()
