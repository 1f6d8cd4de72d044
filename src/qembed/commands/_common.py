"""Options and helpers every CLI command shares: the qembed vocabulary, model loading, ``--json``,
progress and errors.

The same words mean the same thing on the command line, in the REST bodies and in Python:

=============================================  ===================================  =========================  ==================================
thing                                          CLI                                  REST body field            Python parameter
=============================================  ===================================  =========================  ==================================
main input file (texts, pairs, documents,      ``--input / -i PATH``                —                          ``path`` / ``input``
training data)
further files, named by role                   ``--dev``, ``--corpus``,             —                          same names
                                               ``--queries``, ``--qrels``,
                                               ``--labels-file``
texts given directly                           positional ``TEXT...``               ``input`` / ``texts``      ``texts``
output file or folder                          ``--output / -o PATH``               —                          ``output``
columns of a table file                        ``--text-column``, ``--id-column``,  —                          ``text_column``, …
                                               ``--label-column``,
                                               ``--text1-column``,
                                               ``--text2-column``
model                                          ``--model / -m`` (folder, Hub id     ``model``                  ``model``
                                               or http(s) URL)
device, precision, runtime                     ``--device``, ``--dtype``            —                          ``device``, ``dtype``, ``backend``
                                               (auto/bfloat16/float16/float32),
                                               ``--backend`` (torch/openvino/onnx)
instruction                                    ``--instruction TEXT``,              ``instruction`` (null or   ``instruction=None`` (default),
                                               ``--no-instruction``                 omitted: the default;      ``instruction=""`` (none)
                                                                                    ``""``: none)
how many results come back                     ``--top-k N``; ``--top-n N`` for     ``top_k`` / ``top_n``      ``top_k`` / ``top_n``
                                               rerank
how many clusters                              ``--clusters N`` or ``auto``         ``clusters``               ``clusters``
cosine threshold                               ``--min-similarity X``               ``min_similarity``         ``min_similarity``
probability threshold                          ``--min-probability X``              ``min_probability``        ``min_probability``
embedding size (Matryoshka)                    ``--dimensions N``                   ``dimensions``             ``dimensions``
machine-readable output                        ``--json``                           (always JSON)              return values
progress                                       ``--progress/--no-progress``         —                          ``progress: bool | None``
=============================================  ===================================  =========================  ==================================

- ``--json`` prints the body the REST endpoint of the same operation answers (see
  :mod:`qembed.envelope`): the items under ``data``, beside ``object`` (what kind of result),
  ``model`` and, where tokens were counted, ``usage``; fields of one operation sit beside ``data``
  (dedup's group count is ``n_groups``). Rerank follows the Cohere/Jina rerank API (items under
  ``results``) on REST and CLI alike.
- Progress bars go to stderr; by default they show when stderr is a terminal and the work takes
  more than one batch.
- Errors: ``error: <what was wrong>`` on stderr; exit code 2 for bad input or usage (Click's own
  usage errors included), 1 for runtime failures (a model that cannot load, a remote endpoint that
  fails, a damaged index), 130 on Ctrl-C.
- Old spellings (``--pairs``, ``--data``, ``--train``, ``--k``, ``--threshold``, ``--precision``,
  ``--csv``, ``--sentence1-column``, ``--no-instructions`` …; the table is
  :data:`qembed.deprecated.CLI_OPTIONS`) still work until the release :mod:`qembed.deprecated` names:
  they are hidden, map onto the new names and print a ``warning:`` on stderr once.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import typer
from typer.core import TyperCommand

from qembed import deprecated
from qembed.deprecated import IGNORED
from qembed.errors import InputError, QembedError
from qembed.models.runtimes import BACKENDS, DTYPES, canonical_backend, canonical_dtype

logger = logging.getLogger("qembed")

F = TypeVar("F", bound=Callable[..., Any])

# ----------------------------------------------------------------------------- shared options
ModelOpt = typer.Option(
    None, "--model", "-m",
    help="Model folder, Hub id (default Qwen/Qwen3-Embedding-0.6B, or $QEMBED_MODEL), "
         "or the http(s)://…/v1 URL of an OpenAI-compatible endpoint.",
)
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON on stdout (logs go to stderr).")
DeviceOpt = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps.")
DtypeOpt = typer.Option(None, "--dtype", help=f"{', '.join(DTYPES[:-1])} or {DTYPES[-1]} (int8: int8 products "
                                               "on the CPU; the openvino/onnx default).")
BackendOpt = typer.Option(None, "--backend", help=f"Runtime of a local model: {', '.join(BACKENDS)} "
                                                 "(default torch).")
ApiKeyOpt = typer.Option(None, "--api-key", envvar="QEMBED_API_KEY",
                         help="Key for a remote endpoint given as --model URL.")
ProgressOpt = typer.Option(None, "--progress/--no-progress",
                           help="Progress bar on stderr (default: on when stderr is a terminal and the "
                                "work takes more than one batch).")
NoInstructionOpt = typer.Option(False, "--no-instruction", help="Embed the texts as they are (no instruction).")
DimensionsOpt = typer.Option(None, "--dimensions", "-d", help="Matryoshka size (32 up to the model's size).")


def instruction_option(default: str = "the model's default") -> Any:
    """``--instruction TEXT``; ``default`` says what applies without it."""
    return typer.Option(None, "--instruction", help=f"Instruction the texts get (default: {default}; "
                                                    "--no-instruction for none).")


def input_option(help: str, *, required: bool = False) -> Any:
    """``--input / -i PATH``: the command's main input file (repeatable where the type is a list)."""
    return typer.Option(... if required else None, "--input", "-i", help=help)


def output_option(help: str, *, default: Any = None, required: bool = False) -> Any:
    """``--output / -o PATH``."""
    return typer.Option(... if required else default, "--output", "-o", help=help)


def text_column_option(default: str | None = None, help: str = "Column/field holding the text "
                                                                  "(default 'text').") -> Any:
    return typer.Option(default, "--text-column", help=help)


def top_k_option(default: int | None, help: str) -> Any:
    return typer.Option(default, "--top-k", "-k", help=help)


def min_similarity_option(default: float | None, help: str) -> Any:
    return typer.Option(default, "--min-similarity", help=help)


def min_probability_option(default: float | None, help: str) -> Any:
    return typer.Option(default, "--min-probability", help=help)


def clusters_option(help: str = "kmeans: number of clusters (≥ 2) or 'auto' (best silhouette; the "
                                "default).") -> Any:
    return typer.Option(None, "--clusters", help=help)


# ----------------------------------------------------------------------------- old spellings
_warned: set[str] = set()


def reset_warnings() -> None:
    """Forget the warnings given (each run of :func:`qembed.cli.main` warns afresh)."""
    _warned.clear()


def warn_once(message: str) -> None:
    """Print ``warning: message`` on stderr, once per run of the command line."""
    if message not in _warned:
        _warned.add(message)
        typer.echo(f"warning: {message}", err=True)


def deprecated_options(command: str) -> Callable[[F], F]:
    """Declare that ``command`` (as typed after ``qembed``) accepts the old spellings
    :data:`qembed.deprecated.CLI_OPTIONS` lists for it.

    The command's parser (:class:`QembedCommand`) rewrites them before parsing and warns once.
    """
    mapping, notes = deprecated.cli_options(command)

    def mark(fn: F) -> F:
        fn.__qembed_deprecated__ = mapping  # type: ignore[attr-defined]
        fn.__qembed_deprecated_notes__ = notes  # type: ignore[attr-defined]
        return fn
    return mark


def rewrite_deprecated(args: Sequence[str], mapping: Mapping[str, Any],
                       notes: Mapping[str, str] | None = None) -> list[str]:
    """``args`` with old option names replaced by the new ones (``--old=v`` and ``-ov`` too)."""
    out: list[str] = []
    it = iter(args)
    for token in it:
        if token == "--":
            out.append(token)
            out.extend(it)
            break
        name, sep, value = token.partition("=") if token.startswith("--") else (token, "", "")
        attached = None
        if name not in mapping and len(token) > 2 and token[0] == "-" != token[1] and token[:2] in mapping:
            name, attached = token[:2], token[2:]  # -t0.9
        if name not in mapping:
            out.append(token)
            continue
        new = mapping[name]
        note = (notes or {}).get(name)
        warn_once(deprecated.cli_message(name, new, note))
        if new is IGNORED:
            if not sep and attached is None:
                next(it, None)  # drop its value
            continue
        if sep:
            out.append(f"{new}={value}")
        elif attached is not None:
            out.extend([new, attached])
        else:
            out.append(new)
    return out


class QembedCommand(TyperCommand):
    """A Typer command that accepts the old option spellings of :func:`deprecated_options`."""

    #: Old option name -> new name (or :data:`IGNORED`); not Click's own ``deprecated`` flag.
    old_options: ClassVar[dict[str, Any]] = {}
    old_option_notes: ClassVar[dict[str, str]] = {}

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if self.old_options:
            args = rewrite_deprecated(args, self.old_options, self.old_option_notes)
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        """The usage line without hidden (deprecated) arguments."""
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if not getattr(param, "hidden", False):
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


def command_class(callback: Callable[..., Any]) -> type[QembedCommand]:
    """The command class for ``callback``, carrying the old spellings it declared."""
    return type("QembedCommand", (QembedCommand,), {
        "old_options": dict(getattr(callback, "__qembed_deprecated__", {})),
        "old_option_notes": dict(getattr(callback, "__qembed_deprecated_notes__", {})),
    })


def install_command_class(app: typer.Typer) -> None:
    """Give every command of ``app`` (and of its groups) :class:`QembedCommand`."""
    for info in app.registered_commands:
        if info.cls in (None, TyperCommand) and info.callback is not None:
            info.cls = command_class(info.callback)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            install_command_class(group.typer_instance)


def positional_input(value: Any, input: Any, *, option: str = "--input") -> Any:
    """Merge a hidden, deprecated positional FILE argument into ``--input`` (warns once)."""
    if value in (None, [], ()):
        return input
    if input not in (None, [], ()):
        fail(f"give the input file once, with {option}")
    warn_once(deprecated.cli_positional_message(option))
    return value


# ----------------------------------------------------------------------------- values
def resolve_instruction(instruction: str | None, no_instruction: bool, default: str) -> str:
    """The instruction to apply: ``instruction``, ``default`` when none is given, ``""`` for none."""
    if no_instruction and instruction:
        fail("give --instruction or --no-instruction, not both")
    if no_instruction:
        return ""
    return default if instruction is None else instruction


def normalize_dtype(value: str | None) -> str | None:
    """``--dtype`` as one of :data:`~qembed.models.runtimes.DTYPES` (the short spellings accepted)."""
    return canonical_dtype(value)  # an InputError: `error: unknown dtype …`, exit 2


def check_backend(backend: str | None) -> str | None:
    """``--backend`` as one of :data:`~qembed.models.runtimes.BACKENDS` (the short spellings accepted)."""
    return canonical_backend(backend)  # an InputError: `error: unknown backend …`, exit 2


def want_progress(progress: bool | None, n_items: int, encoder: Any = None, *, batch: int | None = None) -> bool:
    """The progress rule (:func:`qembed.config.want_progress`): ``--progress``/``--no-progress`` win;
    otherwise on only when stderr is a terminal and ``n_items`` take more than one batch
    (``batch``, else the encoder's batch size)."""
    from qembed.config import want_progress as rule

    if batch is None:
        batch = getattr(encoder, "max_batch_size", None) or getattr(encoder, "batch_size", None) or 32
    return rule(progress, n_items, batch=int(batch))


# ----------------------------------------------------------------------------- logging
class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr; INFO by default, DEBUG with ``--verbose``."""
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("qembed").setLevel(level)


# ----------------------------------------------------------------------------- models
def open_encoder(
    model: str | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
    backend: str | None = None,
    api_key: str | None = None,
    option: str = "--model DIR or $QEMBED_MODEL",
    **kwargs: Any,
):
    """Load the encoder named on the command line (or by ``QEMBED_MODEL``); ``option`` names where
    the model came from in the error when it is not found."""
    from qembed.config import Settings
    from qembed.errors import ModelNotFoundError
    from qembed.extras import require_backend
    from qembed.io import is_http_url
    from qembed.models import load_encoder
    from qembed.models.resolve import with_option_hint

    backend = check_backend(backend)
    dtype = normalize_dtype(dtype)
    settings = Settings()
    target = model or settings.model
    if is_http_url(target):
        if backend is not None:
            fail("--backend applies to a local model, not to an endpoint URL")
        return load_encoder(target, api_key=api_key, **kwargs)
    backend = backend or settings.backend  # $QEMBED_BACKEND
    require_backend(backend)  # before the model loads
    if backend is not None:  # only when asked: torch needs no backend argument
        kwargs["backend"] = backend
    try:
        return load_encoder(
            target,
            device=device or settings.device,
            dtype=dtype or settings.dtype,
            max_batch_tokens=kwargs.pop("max_batch_tokens", settings.max_batch_tokens),
            max_batch_size=kwargs.pop("max_batch_size", settings.max_batch_size),
            **kwargs,
        )
    except ModelNotFoundError as exc:
        raise with_option_hint(exc, "embedding model", option) from None


# ----------------------------------------------------------------------------- output
def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, set):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


#: Where :func:`emit_json` writes while :func:`json_stdout` holds stdout for it (else ``sys.stdout``).
_json_stream: Any = None


@contextlib.contextmanager
def json_stdout() -> Iterator[None]:
    """Keep stdout for the one JSON document of ``--json``: whatever else writes to stdout while the
    command runs — third-party loggers and progress tables (nncf's statistics, OpenVINO's C++
    messages) — lands on stderr instead. At the file-descriptor level when stdout is fd 1, so C
    and C++ writes move too; otherwise (stdout replaced, as under a test runner) ``sys.stdout``."""
    global _json_stream
    real = sys.stdout
    try:
        fd = real.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        fd = -1
    if fd != 1:
        _json_stream, sys.stdout = real, sys.stderr
        try:
            yield
        finally:
            sys.stdout, _json_stream = real, None
        return
    real.flush()
    saved = os.dup(1)
    os.dup2(2, 1)  # fd 1 (and so sys.stdout) now writes to stderr
    _json_stream = os.fdopen(saved, "w", encoding="utf-8", closefd=False)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            _json_stream.flush()
            sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        _json_stream = None


def emit_json(obj: Any) -> None:
    """Write one JSON document to stdout (the real one, also inside :func:`json_stdout`)."""
    out = _json_stream if _json_stream is not None else sys.stdout
    out.write(json.dumps(obj, ensure_ascii=False, default=_default))
    out.write("\n")
    out.flush()


def fail(message: str, code: int = 2) -> typer.Exit:
    """Stop the command with ``error: message`` on stderr and exit ``code`` (2 bad input, 1 runtime).

    Raises the error kind the one error path in :func:`qembed.cli.main` reports.
    """
    exc: QembedError = InputError(message) if code == 2 else QembedError(message)
    if getattr(exc, "exit_code", None) != code:
        exc.exit_code = code  # type: ignore[attr-defined]
    raise exc


def check_suffix(path: Path | None, allowed: Iterable[str], option: str = "--output") -> None:
    """Fail unless ``path`` (when given) ends in one of ``allowed``."""
    allowed = tuple(allowed)
    if path is not None and path.suffix.lower() not in allowed:
        names = ", ".join(allowed[:-1]) + " or " + allowed[-1] if len(allowed) > 1 else allowed[0]
        fail(f"{option} must end in {names}, got {path.name}")
