"""MkDocs hook: the reference pages are generated from the code at build time, so they cannot drift.

A page holds a marker comment where generated Markdown goes:

- ``<!-- qembed:settings -->``: every field of :class:`qembed.config.Settings` (its ``QEMBED_*``
  environment variable, type, default, constraints, description, the CLI flags that set it), then
  every other ``QEMBED_*`` variable the package reads;
- ``<!-- qembed:cli -->``: the command reference of the Typer app ``qembed.cli:app``, as Typer's own
  ``typer qembed.cli utils docs`` writes it;
- ``examples.md`` (a whole page): ``examples/README.md`` and every script of ``examples/``;
- ``<!-- qembed:errors -->``: every exception kind of :mod:`qembed.errors` with its HTTP status and
  CLI exit code;
- ``<!-- qembed:deprecated -->``: every old name :mod:`qembed.deprecated` still accepts and the release
  that drops it;
- ``<!-- qembed:rest -->``: the endpoints and schemas of the server's OpenAPI document (built with
  :func:`qembed.server.app.create_app`, no model loaded), which is also published as
  ``openapi.json`` beside the page.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.qembed")

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "qembed"

MARKERS = {
    "<!-- qembed:settings -->": lambda: settings_markdown(),
    "<!-- qembed:cli -->": lambda: cli_markdown(),
    "<!-- qembed:rest -->": lambda: rest_markdown(),
    "<!-- qembed:errors -->": lambda: errors_markdown(),
    "<!-- qembed:deprecated -->": lambda: deprecated_markdown(),
}

#: ``QEMBED_*`` variables read outside ``Settings``: what each does. The build fails when the
#: package reads one that is not described here, or when one described here is no longer read.
OTHER_VARIABLES = {
    "QEMBED_COMPILE": "`auto` (default), `true` or `false`: when the packed Qwen3 passes are "
                      "compiled, for encoders loaded in Python without an explicit `compile=` "
                      "argument (see [Compiling](settings.md#compiling)).",
    "QEMBED_SWITCH_INTERVAL": "the interpreter's thread switch interval in seconds set by "
                              "`qembed serve` (default `0.0005`, so the event loop answers promptly "
                              "while other threads run).",
    "QEMBED_CACHE": "where qembed keeps what it builds, such as models exported for the OpenVINO and "
                    "ONNX Runtime backends (`exported/<model>-<backend>-<precision>`; default "
                    "`~/.cache/qembed`).",
    "QEMBED_CPU_GEMM": "`auto` (default), `onednn` or `aten`: how the packed passes multiply by bf16 "
                       "weights on a CPU — weights prepacked once into oneDNN's layout where the CPU "
                       "has native bf16 (`auto`), always (`onednn`), or plain `torch.nn.functional."
                       "linear` (`aten`); see [CPU backends](cpu-backends.md).",
    "QEMBED_OPENVINO_DQ_GROUP": "channels per int8 scale when OpenVINO quantizes the activations of "
                                "int8-weight products at run time, on AVX-512-BF16 CPUs without AMX "
                                "(default `128`, a multiple of 16; `0` turns it off: the int8 weights "
                                "are widened to bf16); see [CPU backends](cpu-backends.md).",
    "QEMBED_MALLOC_TRIM": "`1` (default) or `0`: after a forward pass, at most once a second, an engine "
                          "hands the memory its passes freed back to the operating system (glibc's "
                          "`malloc_trim`); `0` turns it off, e.g. when the process runs with jemalloc "
                          "or tcmalloc.",
    "QEMBED_ROW_BUCKETS": "`1` (default) or `0`: on a CPU, bf16 packed passes are filled with filler "
                          "sequences up to one of a few token counts (multiples of 16 up to 256, then "
                          "16 steps per doubling), so oneDNN builds a kernel once per count instead of "
                          "for every new pass size and its caches stay small; `0` runs each pass at its "
                          "own size. qembed's processes also cap oneDNN's kernel caches at 256 entries "
                          "(`ONEDNN_PRIMITIVE_CACHE_CAPACITY`, `LRU_CACHE_CAPACITY`) unless set.",
    "QEMBED_ALLOW_FP16": "`1` lets a Qwen3 model load in float16 (refused otherwise: NaNs are "
                         "reported with it); the same as `allow_fp16=True` in Python.",
    "QEMBED_SHARED": "the folder holding `models/Qwen3-Embedding-0.6B` and `data/` that the test "
                     "fixtures and benchmarks use (default: `../shared` beside the repository).",
}


# --------------------------------------------------------------------------------------- hooks

def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    for marker, make in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown


#: Sphinx roles in docstrings (``:func:`~qembed.x.f```), as mkdocstrings renders them.
_ROLE = re.compile(r":(?:mod|func|class|meth|attr|data|exc|obj|py:\w+):<code>(~?)([^<]+)</code>")


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """Docstrings use Sphinx roles; show ``:func:`~a.b.f``` as the code ``f`` (``a.b.f`` without ``~``)."""
    return _ROLE.sub(lambda m: f"<code>{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}</code>", html)


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    files.append(File.generated(config, "reference/openapi.json",
                                content=json.dumps(openapi(), indent=2, ensure_ascii=False)))
    files.append(File.generated(config, "examples.md", content=examples_markdown()))
    return files


# ------------------------------------------------------------------------------------ helpers

def _cell(text: Any) -> str:
    """A value made safe for one Markdown table cell (one line, escaped pipes, no raw HTML)."""
    parts = " ".join(str(text).split()).split("`")
    for i in range(0, len(parts), 2):  # outside code spans, "<key>" is text, not a tag
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts).replace("|", "\\|")


def _text(text: str) -> str:
    """Docstring-style ``literals`` and :role:`~targets` as Markdown `literals`."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`",
                  lambda m: f"`{m.group(1).rsplit('.', 1)[-1] if m.group(0).count('~') else m.group(1)}`",
                  text or "")
    parts = text.replace("``", "`").strip().split("`")
    for i in range(0, len(parts), 2):  # outside code spans, "<key>" is text, not a tag
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def _code(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    return f"`{json.dumps(value)}`"


# ----------------------------------------------------------------------------------- settings

def _type_name(annotation: Any) -> str:
    """``int | None`` → ``int or None``; ``Literal["a", "b"]`` → ``"a" or "b"``."""
    import types
    import typing

    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " or ".join(f"`{json.dumps(a)}`" for a in typing.get_args(annotation))
    if origin in (typing.Union, getattr(types, "UnionType", None)):
        args = typing.get_args(annotation)
        named = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(named) + (" or None" if len(named) < len(args) else "")
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", None) or repr(annotation).replace("typing.", "")


def _constraints(metadata: list[Any]) -> list[str]:
    out = []
    for item in metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if getattr(item, attr, None) is not None:
                out.append(f"{sign} {getattr(item, attr)}")
    return out


@lru_cache(maxsize=1)
def _cli_root() -> Any:
    import typer

    from qembed.cli import app

    return typer.main.get_command(app)


def _commands(group: Any, prefix: str = "qembed") -> list[tuple[str, Any]]:
    """Every leaf command of the CLI with its full name."""
    out = []
    sub = getattr(group, "commands", None)
    if not sub:
        return [(prefix, group)]
    for name, command in sub.items():
        if getattr(command, "hidden", False):
            continue
        out.extend(_commands(command, f"{prefix} {name}"))
    return out


def _flags_for(field: str) -> tuple[dict[str, list[str]], str]:
    """Visible CLI options that set ``field`` ({spelling: [commands]}), and the first one's help."""
    wanted = "--" + field.replace("_", "-")
    found: dict[str, list[str]] = {}
    help_text = ""
    # `serve` first: its help text describes the setting as the server uses it.
    commands = sorted(_commands(_cli_root()), key=lambda item: item[0] != "qembed serve")
    for name, command in commands:
        for param in command.params:
            if getattr(param, "param_type_name", "") != "option" or getattr(param, "hidden", False):
                continue
            spellings = list(param.opts) + list(getattr(param, "secondary_opts", []))
            if (param.name or "").rstrip("_") == field or wanted in spellings:
                long = [s for s in param.opts if s.startswith("--")] or list(param.opts)
                key = " / ".join(f"`{s}`" for s in long)
                if getattr(param, "secondary_opts", None):
                    key += " / " + " / ".join(f"`{s}`" for s in param.secondary_opts)
                found.setdefault(key, []).append(name.removeprefix("qembed "))
                help_text = help_text or (getattr(param, "help", None) or "")
    return found, help_text


def deprecated_markdown() -> str:
    from qembed.deprecated import markdown

    return markdown()


def settings_markdown() -> str:
    from qembed.config import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    rows = ["| variable | type | default | what it sets |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        flags, flag_help = _flags_for(name)
        what = _text(field.description or flag_help).rstrip(".")
        extra = _constraints(field.metadata)
        if extra:
            what += f" (allowed: {', '.join(extra)})"
        if flags:
            parts = []
            for key, commands in flags.items():
                where = ", ".join(f"`{c}`" for c in commands) if len(commands) <= 4 else f"{len(commands)} commands"
                parts.append(f"{key} ({where})")
            what += ". Flag: " + "; ".join(parts)
        default = field.default
        rows.append(f"| `{prefix}{name.upper()}` | {_cell(_type_name(field.annotation))} | "
                    f"{_cell(_code(default))} | {_cell(what)} |")

    read = _variables_read()
    known = {f"{prefix}{n.upper()}" for n in Settings.model_fields}
    others = sorted(v for v in read if v not in known)
    undocumented = [v for v in others if v not in OTHER_VARIABLES]
    stale = [v for v in OTHER_VARIABLES if v not in read]
    for v in undocumented:
        log.warning("%s is read by the package but not described in docs/hooks/reference.py", v)
    for v in stale:
        log.warning("%s is described in docs/hooks/reference.py but no longer read", v)
    rows2 = ["| variable | read by | what it does |", "|---|---|---|"]
    for v in others:
        rows2.append(f"| `{v}` | {', '.join(f'`{m}`' for m in read[v])} | {_cell(OTHER_VARIABLES.get(v, ''))} |")
    return "\n".join(rows) + "\n\n## Other environment variables\n\n" + "\n".join(rows2) + "\n"


def _variables_read() -> dict[str, list[str]]:
    """``QEMBED_*`` names written as string literals in the package, with the modules that hold them."""
    found: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        for name in sorted(set(re.findall(r"""["'](QEMBED_[A-Z0-9_]+)["']""", text))):
            found.setdefault(name, []).append(module)
    return found


# ----------------------------------------------------------------------------------- examples

def examples_markdown() -> str:
    """The ``examples/`` folder as a page: its README, then every script in full."""
    folder = ROOT / "examples"
    readme = (folder / "README.md").read_text(encoding="utf-8").strip()
    out = [readme, ""]
    for script in sorted(folder.glob("*.py")):
        out += [f"## {script.name}", "", "```python", script.read_text(encoding="utf-8").rstrip(), "```", ""]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------- errors

def errors_markdown() -> str:
    import inspect

    from qembed import errors

    rows = ["| exception | HTTP status | exit code | when |", "|---|---|---|---|"]
    for name, cls in inspect.getmembers(errors, inspect.isclass):
        if not issubclass(cls, errors.QembedError) or cls.__module__ != errors.__name__:
            continue
        doc = _text(inspect.getdoc(cls) or "").split("\n\n")[0]
        rows.append(f"| `{name}` | {cls.status_code} | {cls.exit_code} | {_cell(doc)} |")
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------------------------------- CLI

@lru_cache(maxsize=1)
def cli_markdown() -> str:
    """Typer's own Markdown for the app, headings moved one level down (the page has its title)."""
    out = subprocess.run(
        [sys.executable, "-m", "typer", "--app", "app", "qembed.cli", "utils", "docs", "--name", "qembed",
         "--title", "qembed"],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )
    if out.returncode != 0:
        raise RuntimeError(f"typer utils docs failed: {out.stderr.strip()}")
    lines = []
    for line in out.stdout.splitlines():
        if line.startswith("#"):
            line = "#" + line
        lines.append(line.replace("```console", "```text"))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------- REST

@lru_cache(maxsize=1)
def openapi() -> dict[str, Any]:
    from qembed.config import Settings
    from qembed.server.app import create_app

    # The schema needs the routes, not a model: the loader only runs when the server starts.
    app = create_app(Settings(), loader=lambda: None)
    return app.openapi()


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _anchor(name: str) -> str:
    return "schema-" + name.lower()


def _schema_type(s: dict[str, Any]) -> str:
    if "$ref" in s:
        name = _ref_name(s["$ref"])
        return f"[{name}](#{_anchor(name)})"
    for key in ("anyOf", "oneOf"):
        if key in s:
            branches = [b for b in s[key] if b.get("type") != "null"]
            text = " or ".join(_schema_type(b) for b in branches)
            if len(branches) < len(s[key]):
                text += " or null"
            return text
    if "enum" in s:
        return " or ".join(f"`{json.dumps(v, ensure_ascii=False)}`" for v in s["enum"])
    if "const" in s:
        return f"`{json.dumps(s['const'], ensure_ascii=False)}`"
    t = s.get("type")
    if t == "array":
        items = s.get("items")
        text = f"array of {_schema_type(items)}" if items else "array"
        bounds = _bounds(s, "minItems", "maxItems")
        return f"{text} ({bounds}{'' if bounds == 'non-empty' else ' items'})" if bounds else text
    if isinstance(t, list):
        return " or ".join(t)
    text = t or "any"
    if t == "string":
        bounds = _bounds(s, "minLength", "maxLength")
        if bounds:
            text += f" ({bounds}{'' if bounds == 'non-empty' else ' characters'})"
        if "pattern" in s:
            text += f" matching `{s['pattern']}`"
    elif t in ("integer", "number"):
        lo = s.get("minimum", s.get("exclusiveMinimum"))
        hi = s.get("maximum", s.get("exclusiveMaximum"))
        if lo is not None or hi is not None:
            lo_s = "" if lo is None else (f"> {_num(lo)}" if "exclusiveMinimum" in s else f"≥ {_num(lo)}")
            hi_s = "" if hi is None else (f"< {_num(hi)}" if "exclusiveMaximum" in s else f"≤ {_num(hi)}")
            text += " (" + ", ".join(x for x in (lo_s, hi_s) if x) + ")"
    return text


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _bounds(s: dict[str, Any], lo_key: str, hi_key: str) -> str:
    lo, hi = s.get(lo_key), s.get(hi_key)
    if lo == 1 and hi is None:
        return "non-empty"
    if lo is not None and hi is not None:
        return f"{lo}–{hi}"
    if lo is not None:
        return f"at least {lo}"
    if hi is not None:
        return f"at most {hi}"
    return ""


def _fields_table(schema: dict[str, Any]) -> list[str]:
    props = schema.get("properties") or {}
    if not props:
        extra = schema.get("additionalProperties")
        return ["A JSON object" + (" with any fields." if extra else ".")]
    required = set(schema.get("required", []))
    rows = ["| field | type | required | default | description |", "|---|---|---|---|---|"]
    for name, prop in props.items():
        default = ("`null`" if prop["default"] is None else _code(prop["default"])) if "default" in prop else ""
        rows.append(f"| `{name}` | {_cell(_schema_type(prop))} | {'yes' if name in required else ''} | "
                    f"{_cell(default)} | {_cell(_text(prop.get('description', '')))} |")
    return rows


def _body_schema(content: dict[str, Any] | None) -> tuple[str | None, dict[str, Any] | None]:
    if not content:
        return None, None
    media, spec = next(iter(content.items()))
    return media, spec.get("schema")


def rest_markdown() -> str:
    spec = openapi()
    schemas = spec.get("components", {}).get("schemas", {})
    out: list[str] = []
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            tag = (op.get("tags") or ["Server"])[0]
            by_tag.setdefault(tag, []).append((path, method, op))

    for tag, ops in by_tag.items():
        out += [f"## {tag}", ""]
        for path, method, op in ops:
            out += [f"### `{method.upper()} {path}`", ""]
            if op.get("summary"):
                out += [f"**{op['summary']}.**" if not op["summary"].endswith(".") else f"**{op['summary']}**", ""]
            if op.get("description"):
                out += [_text(op["description"]), ""]
            params = op.get("parameters") or []
            if params:
                out += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
                for p in params:
                    out.append(f"| `{p['name']}` | {p.get('in', '')} | {_cell(_schema_type(p.get('schema', {})))} | "
                               f"{'yes' if p.get('required') else ''} | {_cell(p.get('description', ''))} |")
                out.append("")
            body = op.get("requestBody")
            if body:
                media, schema = _body_schema(body.get("content"))
                if schema is not None:
                    out += [f"Request body (`{media}`): {_schema_type(schema)}", ""]
                    resolved = schemas.get(_ref_name(schema["$ref"])) if "$ref" in schema else schema
                    if resolved:
                        out += _fields_table(resolved) + [""]
            out += ["| status | meaning | body |", "|---|---|---|"]
            for code, resp in op.get("responses", {}).items():
                media, schema = _body_schema(resp.get("content"))
                body_type = _schema_type(schema) if schema else ""
                if media and media != "application/json":
                    body_type = f"`{media}`" + (f" {body_type}" if body_type else "")
                out.append(f"| {code} | {_cell(resp.get('description', ''))} | {_cell(body_type)} |")
            out.append("")

    out += ["## Schemas", ""]
    for name, schema in sorted(schemas.items()):
        out += [f"### {name} {{#{_anchor(name)}}}", ""]
        desc = (schema.get("description") or "").strip()
        if desc:
            out += [_text(desc), ""]
        if "enum" in schema:
            out += ["One of " + _schema_type(schema) + ".", ""]
            continue
        out += _fields_table(schema) + [""]
    return "\n".join(out) + "\n"
