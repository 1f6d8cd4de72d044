"""The ``qembed`` command line: one Typer app mirroring the Python API.

Each feature lives in ``qembed/commands/<feature>.py`` with a ``register(app, groups)`` function
that adds its commands to the app or to one of the command groups below.
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional

import typer

from qembed import __version__
from qembed.commands._common import setup_logging
from qembed.errors import QembedError

app = typer.Typer(
    name="qembed",
    help="Qwen3-Embedding end to end: serve, embed, compare, search, cluster, classify, tune, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

#: Command groups (``qembed index add``, ``qembed eval retrieval`` …) shared by the feature modules.
groups: dict[str, typer.Typer] = {
    "index": typer.Typer(help="Build and maintain a knowledge-base index.", no_args_is_help=True),
    "eval": typer.Typer(help="Measure a capability on labelled data against simple baselines.",
                        no_args_is_help=True),
    "finetune": typer.Typer(help="Fine-tune a model (LoRA pair classifier or embedding model).",
                            no_args_is_help=True),
    "data": typer.Typer(help="Inspect data sets before training.", no_args_is_help=True),
}

COMMAND_MODULES = ("embed", "serve", "pairs", "cluster", "search", "finetune")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"qembed {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging on stderr."),
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                           help="Print the version and exit."),
) -> None:
    setup_logging(verbose)


for _name in COMMAND_MODULES:
    importlib.import_module(f"qembed.commands.{_name}").register(app, groups)
for _group, _sub in groups.items():
    if _sub.registered_commands or _sub.registered_groups:
        app.add_typer(_sub, name=_group)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print ``error: …`` on stderr and exit 2, without a traceback."""
    try:
        app(args=argv, prog_name="qembed", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except QembedError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        return 2
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())


def run() -> None:
    """Console-script wrapper around :func:`main`."""
    sys.exit(main())
