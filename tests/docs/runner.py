"""Runs the fenced examples of one documentation page, in page order, as a user would.

- ``python`` blocks run in one namespace per page (later blocks use earlier names), in the page's
  working folder. Names a snippet takes as "your data" (``texts``, ``documents``, ``gold_labels`` …)
  are given beforehand (:func:`workspace.placeholders`).
- ``bash`` blocks run line by line (``\\`` continuations joined, ``#`` comments dropped, ``&&``
  chains split, ``VAR=value`` prefixes applied):

  - ``qembed …``: its subcommand and every ``--flag`` are checked against the CLI, then it runs
    through the ``qembed`` console-script entry point, in this process (the imports are paid once);
    it must exit 0, and with ``--json`` print JSON. A line with ``…`` in it is a sketch: only checked.
  - ``qembed serve …``: started in the background from the venv's ``qembed`` script on a free
    loopback port (``--host``/``--port`` rewritten), waited on until ``/health`` answers; it serves
    the rest of the page (``localhost:30000``, ``http://host:30000`` in later lines and snippets
    point at it). A page whose examples call port 30000 without starting a server gets
    ``qembed serve --model Qwen/Qwen3-Embedding-0.6B`` (the README's command), one for all such pages;
    a page that starts exactly that command (any ``--host``/``--port``) is served by it too.
  - ``curl …``: run against that server; must answer 2xx (and JSON when it answers a body).
  - ``make T …``: ``make -n T …`` (the target and its variables exist; nothing is built).
  - ``pip install …``: every extra it names exists in ``pyproject.toml``, a torch pin is the
    Makefile's (the install itself is tested by tests/install/).
  - ``python benchmarks/X.py …``: the script defines every flag used (the benchmarks themselves
    take minutes and run with ``make bench``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Iterator

import httpx

try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib

from .blocks import ROOT, Block

DOC_PORT = "30000"
QEMBED_SCRIPT = Path(sys.executable).with_name("qembed")
DEFAULT_SERVE = ["qembed", "serve", "--model", "Qwen/Qwen3-Embedding-0.6B"]
_URL_PORT = re.compile(r"\b(?:localhost|0\.0\.0\.0|127\.0\.0\.1|[A-Za-z][\w.-]*):" + DOC_PORT + r"\b")


class DocFailure(AssertionError):
    """A documented example did not work as written."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def logical_lines(code: str) -> list[str]:
    """Shell lines with ``\\`` continuations joined, and lines inside an open quote kept together
    (``curl -d '{…`` over several lines)."""
    out: list[str] = []
    pending = ""
    for raw in code.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on
            pending += "\n"
            continue
        out.append(pending)
        pending = ""
    if pending:
        out.append(pending)
    return [line for line in out if line.strip()]


@contextlib.contextmanager
def environ(extra: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ------------------------------------------------------------------------------------- the CLI

def cli_command(argv: list[str]) -> tuple[Any, list[str]]:
    """The Click command ``argv`` (without ``qembed``) names, and the rest of the arguments."""
    import typer

    from qembed.cli import app

    command = typer.main.get_command(app)
    rest = list(argv)
    path = ["qembed"]
    while getattr(command, "commands", None) and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        sub = command.commands.get(name)
        if sub is None:
            raise DocFailure(f"`{' '.join(path)}` has no command {name!r}")
        command, path = sub, path + [name]
    if getattr(command, "commands", None):
        raise DocFailure(f"`{' '.join(path)}` needs a command")
    return command, rest


def check_cli_flags(argv: list[str]) -> None:
    """Fail when ``qembed argv`` names a command or an option the CLI does not have."""
    command, rest = cli_command(argv)
    known: set[str] = {"--help", "-h"}
    for param in command.params:
        known.update(getattr(param, "opts", []))
        known.update(getattr(param, "secondary_opts", []))
    for token in rest:
        if token == "--" :
            break
        if token.startswith("-") and len(token) > 1 and not re.match(r"^-\d", token):
            flag = token.split("=", 1)[0]
            if flag not in known:
                raise DocFailure(f"`qembed {' '.join(argv[:len(argv) - len(rest)])}` has no option {flag}")


def run_cli_in_process(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run the ``qembed`` console-script entry point on ``argv``; return (exit code, stdout, stderr)."""
    (entry,) = [e for e in entry_points(group="console_scripts") if e.name == "qembed"]
    main = entry.load()
    out_bytes, err_bytes = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_bytes, encoding="utf-8", write_through=True)
    err = io.TextIOWrapper(err_bytes, encoding="utf-8", write_through=True)
    old_argv = sys.argv
    sys.argv = ["qembed", *argv]
    code: int = 0
    try:
        with environ(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old_argv
    return code, out_bytes.getvalue().decode("utf-8", "replace"), err_bytes.getvalue().decode("utf-8", "replace")


def assert_json(text: str, what: str) -> Any:
    """``text`` is one JSON document or JSON lines."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError:
        raise DocFailure(f"{what}: --json output is not JSON:\n{text[:2000]}") from None


def _without_address(argv: list[str]) -> list[str]:
    """``argv`` without its ``--host``/``--port`` options (the runner picks those)."""
    out, rest = [], iter(argv)
    for token in rest:
        if token in ("--host", "--port"):
            next(rest, None)
        elif not token.startswith(("--host=", "--port=")):
            out.append(token)
    return out


# ------------------------------------------------------------------------------------ a page

class PageRun:
    """The state one page's examples share: working folder, Python namespace, background server."""

    def __init__(self, blocks: list[Block], workdir: Path, namespace: dict[str, Any],
                 shared: "PageRun | None" = None) -> None:
        self.blocks = blocks
        self.shared = shared  # serves the pages that call port 30000 without starting a server
        self.workdir = workdir
        self.namespace = namespace
        self.port = free_port()
        self.server: subprocess.Popen | None = None
        self.server_log: Path | None = None
        self.done: dict[int, bool] = {}   # block index -> passed
        self.extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
                          ["project"]["optional-dependencies"])

    # -- ordering: a block runs after the earlier blocks of its page
    def run(self, block: Block) -> None:
        for earlier in self.blocks[:block.index]:
            if earlier.index in self.done or earlier.marker == "skip":
                continue
            try:
                self._run_one(earlier)
                self.done[earlier.index] = True
            except Exception as exc:  # noqa: BLE001 - reported as the reason this block cannot run
                self.done[earlier.index] = False
                if earlier.marker != "xfail":
                    raise DocFailure(f"an earlier example of the page failed: {earlier.id}: {exc}") from exc
        try:
            self._run_one(block)
        except BaseException:
            self.done[block.index] = False
            raise
        self.done[block.index] = True

    def _run_one(self, block: Block) -> None:
        if block.kind == "python":
            self.run_python(block)
        else:
            self.run_shell(block)

    def rewrite(self, text: str) -> str:
        """Point ``host:30000`` at this page's server (started when none runs yet)."""
        if not _URL_PORT.search(text):
            return text
        owner = self
        if self.server is None:
            owner = self.shared or self
            if owner.server is None:
                owner.start_server(list(DEFAULT_SERVE))
        return _URL_PORT.sub(f"127.0.0.1:{owner.port}", text)

    # -- python
    def run_python(self, block: Block) -> None:
        code = self.rewrite(block.code)
        compiled = compile(code, block.id, "exec")
        cwd = os.getcwd()
        os.chdir(self.workdir)
        try:
            exec(compiled, self.namespace)  # noqa: S102 - the documented snippet, as a user runs it
        finally:
            os.chdir(cwd)

    # -- shell
    def check_shell(self, block: Block) -> None:
        """The ``qembed`` lines' commands and flags exist (for blocks that are not run)."""
        for line in logical_lines(block.code):
            for argv, _env, _bg in self.commands(line):
                if argv and argv[0] == "qembed":
                    check_cli_flags(argv[1:])

    @staticmethod
    def commands(line: str) -> list[tuple[list[str], dict[str, str], bool]]:
        tokens = shlex.split(line, comments=True)
        out, current = [], []
        for token in tokens + ["&&"]:
            if token in ("&&", ";"):
                if current:
                    background = current[-1] == "&"
                    if background:
                        current = current[:-1]
                    env = {}
                    while current and re.match(r"^[A-Z_][A-Z0-9_]*=", current[0]):
                        key, value = current.pop(0).split("=", 1)
                        env[key] = value
                    out.append((current, env, background))
                current = []
            else:
                current.append(token)
        return out

    def run_shell(self, block: Block) -> None:
        for line in logical_lines(block.code):
            sketch = "…" in line
            for argv, env, _background in self.commands(line):
                if not argv:
                    continue
                self.run_command(argv, env, sketch, line)

    def run_command(self, argv: list[str], env: dict[str, str], sketch: bool, line: str) -> None:
        program = argv[0]
        if program == "qembed":
            check_cli_flags(argv[1:])
            if sketch:
                return
            if argv[1:2] == ["serve"]:
                self.start_server(argv, env)
                return
            self.run_qembed(argv[1:], env, line)
        elif program == "curl":
            if not sketch:
                self.run_curl(argv, line)
        elif program == "make":
            self.run_make(argv, line)
        elif program == "pip":
            self.check_pip(argv, line)
        elif program.endswith("python") and len(argv) > 1 and argv[1].startswith("benchmarks/"):
            self.check_benchmark(argv, line)
        elif not sketch:
            raise DocFailure(f"no way to run `{line}` in the doc tests: mark the block "
                             '<!-- doc-test: skip reason="…" --> or teach tests/docs/runner.py')

    def run_qembed(self, argv: list[str], env: dict[str, str], line: str) -> None:
        argv = [self.rewrite(a) for a in argv]
        cwd = os.getcwd()
        os.chdir(self.workdir)
        try:
            code, out, err = run_cli_in_process(argv, env)
        finally:
            os.chdir(cwd)
        if code != 0:
            raise DocFailure(f"`{line.strip()}` exited {code}:\n{err[-3000:]}\n{out[-1000:]}")
        if "--json" in argv:
            assert_json(out, line.strip())

    def run_curl(self, argv: list[str], line: str) -> None:
        argv = [self.rewrite(a) for a in argv]
        proc = subprocess.run(["curl", "-sS", "--fail-with-body", "--max-time", "120", *argv[1:]],
                              capture_output=True, text=True, cwd=self.workdir, check=False)
        if proc.returncode != 0:
            raise DocFailure(f"`{line.strip()}` failed ({proc.returncode}): {proc.stderr}{proc.stdout[-2000:]}")
        if proc.stdout.strip():
            assert_json(proc.stdout, line.strip())

    def run_make(self, argv: list[str], line: str) -> None:
        proc = subprocess.run(["make", "-n", *argv[1:]], capture_output=True, text=True, cwd=ROOT, check=False)
        if proc.returncode != 0:
            raise DocFailure(f"`{line.strip()}`: make -n failed: {proc.stderr[-2000:]}")

    def check_pip(self, argv: list[str], line: str) -> None:
        if argv[1:2] != ["install"]:
            raise DocFailure(f"`{line.strip()}`: only `pip install` is understood")
        specs = [a for a in argv[2:] if not a.startswith("-")]
        for spec in specs:
            if spec.startswith("torch"):  # the Makefile's TORCH, installed first
                if spec != "torch" and spec not in (ROOT / "Makefile").read_text(encoding="utf-8"):
                    raise DocFailure(f"`{line.strip()}`: {spec} is not the Makefile's TORCH")
                continue
            m = re.match(r"^(qembed|\.)(?:\[([\w,\s-]+)\])?$", spec)
            if not m:
                raise DocFailure(f"`{line.strip()}`: {spec!r} is not qembed or the source folder")
            for extra in filter(None, (e.strip() for e in (m.group(2) or "").split(","))):
                if extra not in self.extras:
                    raise DocFailure(f"`{line.strip()}`: pyproject.toml has no extra {extra!r}")

    def check_benchmark(self, argv: list[str], line: str) -> None:
        """The script exists and defines every ``--flag`` used (read from its source: its imports
        alone take longer than the rest of a page)."""
        script = ROOT / argv[1]
        if not script.is_file():
            raise DocFailure(f"`{line.strip()}`: {argv[1]} does not exist")
        source = script.read_text(encoding="utf-8")
        for token in argv[2:]:
            flag = token.split("=", 1)[0]
            if flag.startswith("--") and f'"{flag}"' not in source and f"'{flag}'" not in source:
                raise DocFailure(f"`{line.strip()}`: {argv[1]} has no option {flag}")

    # -- the server
    def start_server(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.stop_server()
        if self.shared is not None and not env and _without_address(argv) == DEFAULT_SERVE:
            # the README's own command: the one server of the pages that call port 30000 without
            # starting one serves this page too (same model, same flags; a start-up saved)
            if self.shared.server is None:
                self.shared.start_server(list(DEFAULT_SERVE))
            return
        args = list(argv[1:])
        for flag, value in (("--host", "127.0.0.1"), ("--port", str(self.port))):
            if flag in args:
                args[args.index(flag) + 1] = value
            else:
                args += [flag, value]
        self.server_log = self.workdir / f"serve-{self.port}.log"
        log = self.server_log.open("w", encoding="utf-8")
        self.server = subprocess.Popen([str(QEMBED_SCRIPT), *args], cwd=self.workdir, stdout=log,
                                       stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        log.close()
        url = f"http://127.0.0.1:{self.port}/health"
        deadline = time.monotonic() + 300
        while True:
            if self.server.poll() is not None:
                text = self.server_log.read_text(encoding="utf-8", errors="replace")
                self.server = None
                raise DocFailure(f"`qembed {' '.join(args)}` exited before answering:\n{text[-3000:]}")
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop_server()
                raise DocFailure(f"`qembed {' '.join(args)}` did not answer /health 200 within 300 s")
            time.sleep(0.2)

    def stop_server(self) -> None:
        if self.server is None:
            return
        self.server.terminate()
        try:
            self.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()
        self.server = None
