"""The ``qembed`` command line: one Typer app mirroring the Python API.

Each feature lives in ``qembed/commands/<feature>.py`` with a ``register(app, groups)`` function
that adds its commands to the app or to one of the command groups below.
"""

from __future__ import annotations

import importlib
import logging
import sys
from contextlib import nullcontext

import typer

from qembed import __version__
from qembed.commands._common import install_command_class, json_stdout, reset_warnings, setup_logging
from qembed.errors import QembedError

logger = logging.getLogger("qembed")

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

COMMAND_MODULES = ("embed", "serve", "pairs", "cluster", "topics", "summarize", "search", "rerank", "finetune",
                   "export", "doctor")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"qembed {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging on stderr."),
    version: bool | None = typer.Option(None, "--version", callback=_version, is_eager=True,
                                           help="Print the version and exit."),
) -> None:
    setup_logging(verbose)


for _name in COMMAND_MODULES:
    importlib.import_module(f"qembed.commands.{_name}").register(app, groups)
for _group, _sub in groups.items():
    if _sub.registered_commands or _sub.registered_groups:
        app.add_typer(_sub, name=_group)
install_command_class(app)  # old option spellings (hidden aliases) on every command


def main(argv: list[str] | None = None) -> int:
    """Entry point and the one error path of the CLI.

    ``error: <message>`` on stderr, never a traceback: exit 2 for bad input or usage (Click's own
    usage errors too), 1 for runtime failures, each :class:`~qembed.errors.QembedError` kind by its
    ``exit_code``; 130 on Ctrl-C.
    """
    reset_warnings()
    args = sys.argv[1:] if argv is None else list(argv)
    # --json: stdout carries the JSON document alone; any other write to it goes to stderr
    guard = json_stdout() if "--json" in args[: args.index("--") if "--" in args else None] else nullcontext()
    try:
        with guard:
            result = app(args=args, prog_name="qembed", standalone_mode=False)
    except typer.TyperException as exc:  # Click's usage errors (bad option, missing value …)
        return _usage_error(exc)
    except QembedError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        return int(getattr(exc, "exit_code", 2))
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("interrupted", err=True)
        return 130
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except MemoryError:
        typer.echo("error: out of memory", err=True)
        return 1
    except Exception as exc:  # a runtime failure without a qembed error kind
        logger.debug("unexpected failure", exc_info=True)
        typer.echo(f"error: {type(exc).__name__}: {exc}" + ("" if logger.isEnabledFor(logging.DEBUG)
                   else " (run with --verbose for the traceback)"), err=True)
        return 1
    if result == 130:  # Ctrl-C inside Click's own handling
        typer.echo("interrupted", err=True)
    return int(result) if isinstance(result, int) else 0


def _usage_error(exc: typer.TyperException) -> int:
    if type(exc).__name__ == "NoArgsIsHelpError":  # `qembed` or a group without a command: its help
        typer.echo(exc.format_message())
        return int(getattr(exc, "exit_code", 2))
    ctx = getattr(exc, "ctx", None)
    message = exc.format_message()
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None and getattr(ctx, "command_path", None) else ""
    typer.echo(f"error: {message}{hint}", err=True)
    return int(getattr(exc, "exit_code", 2))


if __name__ == "__main__":
    sys.exit(main())


def run() -> None:
    """Console-script wrapper around :func:`main` (the process is qembed's: its kernel caches are
    capped, :func:`~qembed.server.memory.bound_kernel_caches`)."""
    from qembed.server.memory import bound_kernel_caches

    bound_kernel_caches()
    sys.exit(main())
