"""``qembed doctor``: the facts of this installation, to paste into a bug report."""

from __future__ import annotations

from typing import Any

import typer

from qembed.commands._common import JsonOpt, emit_json


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _print(body: dict[str, Any]) -> None:
    v = body["versions"]
    typer.echo(f"qembed {v['qembed']}  Python {v['python']}  ({v['platform']})")
    typer.echo("  " + "  ".join(f"{k} {v[k] or '-'}" for k in ("torch", "transformers", "sentence-transformers",
                                                                 "huggingface-hub", "numpy", "faiss-cpu")))
    typer.echo("extras:")
    for name, e in body["extras"].items():
        state = "installed" if e["installed"] else f"missing {', '.join(e['missing'])}  (pip install 'qembed[{name}]')"
        typer.echo(f"  {name:<11} {state}")
    typer.echo("backends:")
    for name, b in body["backends"].items():
        typer.echo(f"  {name:<11} " + (f"imports ({b.get('version') or '?'})" if b["imports"] else f"no: {b['error']}"))
    c = body["cpu"]
    sets = c["instruction_sets"]
    have = ", ".join(k for k, ok in (sets or {}).items() if ok) or "unknown"
    typer.echo(f"cpu: {c['model']} ({c['machine']}, {c['cores']} cores, torch {c['torch_threads']} threads)")
    typer.echo(f"  instruction sets: {have}; torch kernels: {c['torch_capability']}; qembed picks {c['dtype']}")
    g = body["gpu"]
    if g["cuda_available"]:
        for d in g["devices"]:
            typer.echo(f"gpu {d['index']}: {d['name']} ({d['memory_gib']} GiB, sm {d['capability']}), "
                       f"CUDA {g['cuda_version']}, flash-attn {g['flash_attn'] or 'not installed'}; "
                       f"qembed picks {g['dtype']}")
    else:
        typer.echo(f"gpu: none (CUDA {'build ' + g['cuda_version'] if g['cuda_version'] else 'not in this torch'}"
                   f"{'; MPS available' if g['mps_available'] else ''})")
    m = body["models"]
    typer.echo(f"model: {m['default_model']} (source {m['source']}"
               + (f", cached {_yes(m['cached'])}" if "cached" in m else "") + ")")
    typer.echo(f"  caches: qembed {m['qembed_cache']}; Hugging Face {m['hf_cache']}")
    hub = m.get("hub")
    if hub is not None:
        if not hub["checked"]:
            typer.echo(f"  {m['endpoint']}: not checked ({hub['reason']})")
        elif hub["reachable"]:
            typer.echo(f"  {m['endpoint']}: reachable (HTTP {hub['status']}, {hub['seconds']} s)")
        else:
            typer.echo(f"  {m['endpoint']}: NOT reachable ({hub['error']}); see the offline set-up in the docs")


def doctor(
    network: bool = typer.Option(True, "--network/--no-network",
                                 help="Check whether the model hub answers (a HEAD request, 3 s at most)."),
    as_json: bool = JsonOpt,
) -> None:
    """Report versions, extras, backends, CPU instruction sets, GPU and model caches (paste it into a bug report)."""
    from qembed.doctor import report

    body = report(check_hub=network)
    if as_json:
        emit_json(body)
    else:
        _print(body)


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """Add ``qembed doctor``."""
    app.command("doctor")(doctor)
