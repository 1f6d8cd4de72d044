"""Several writers on one FAISS folder, and ``kill -9`` while saving (issue 11, items 2 and 3).

Real processes: each writer is a separate Python process (or the real ``qembed`` CLI), the
server a real one on a loopback port. What must hold: no writer's documents are lost, a second
writer waits for the first (or, past its ``lock_timeout``, is refused with a clear error and
writes nothing), and a process killed at any moment leaves a folder that opens with a saved
state.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from qembed.store import open_store
from qembed.store.faiss_store import IndexLockedError

DIM = 8

#: A writer process: adds ``rounds`` x ``per_round`` documents named after ``name``, saving after
#: each round, and prints one JSON line per save.
WRITER = textwrap.dedent("""
    import json, sys
    import numpy as np
    from qembed.store import open_store

    folder, name, rounds, per_round, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    store = open_store(folder, dim=8, lock_timeout=timeout)
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    for r in range(rounds):
        ids = [f"{name}-{r}-{i}" for i in range(per_round)]
        store.upsert(ids, rng.normal(size=(per_round, 8)).astype("float32"), texts=ids)
        store.save()
        print(json.dumps({"saved": (r + 1) * per_round}), flush=True)
    store.close()
""")

#: A writer that takes the lock, says so, and saves only when told to (a line on stdin).
HOLDER = textwrap.dedent("""
    import sys
    import numpy as np
    from qembed.store import open_store

    store = open_store(sys.argv[1], dim=8)
    store.upsert(["held-0", "held-1"], np.ones((2, 8), dtype="float32"), texts=["a", "b"])
    print("locked", flush=True)
    sys.stdin.readline()
    store.save()
    store.close()
    print("saved", flush=True)
""")


def python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], text=True, **kwargs)


def stored_ids(folder: Path) -> list[str]:
    store = open_store(folder)
    try:
        return sorted(store.ids())
    finally:
        store.close()


def test_two_writer_processes_lose_nothing(tmp_path):
    # Before: both exited 0 and one writer's additions were gone (or both failed on gen-N.partial).
    folder = tmp_path / "ix"
    open_store(folder, dim=DIM).close()
    writers = [python(WRITER, folder, name, 12, 5, 120, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for name in ("alpha", "beta")]
    results = [w.communicate(timeout=300) for w in writers]
    for w, (out, err) in zip(writers, results):
        assert w.returncode == 0, err
        assert json.loads(out.splitlines()[-1]) == {"saved": 60}
    ids = stored_ids(folder)
    assert len(ids) == 120
    assert ids == sorted(f"{n}-{r}-{i}" for n in ("alpha", "beta") for r in range(12) for i in range(5))


def test_second_writer_waits_for_the_first(tmp_path):
    folder = tmp_path / "ix"
    open_store(folder, dim=DIM).close()
    holder = python(HOLDER, folder, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = "import logging; logging.basicConfig(level=logging.INFO)\n" + WRITER
        waiter = python(code, folder, "late", 1, 3, 300, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # the waiter reports that it is waiting for the holder's lock ...
        for line in waiter.stderr:
            if "waiting up to" in line:
                assert f"pid {holder.pid}" in line
                break
        else:
            pytest.fail("the second writer never waited for the lock")
        holder.stdin.write("go\n")  # ... and goes on once the holder has saved
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "saved"
        out, err = waiter.communicate(timeout=120)
        assert waiter.returncode == 0, err
    finally:
        holder.kill()
        holder.wait()
    assert stored_ids(folder) == ["held-0", "held-1", "late-0-0", "late-0-1", "late-0-2"]


def test_second_writer_is_refused_after_its_timeout_and_writes_nothing(tmp_path):
    folder = tmp_path / "ix"
    open_store(folder, dim=DIM).close()
    holder = python(HOLDER, folder, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "locked"
        store = open_store(folder, lock_timeout=0.2)
        with pytest.raises(IndexLockedError, match=f"being written by another process \\(pid {holder.pid}"):
            store.upsert(["refused"], [[1.0] * DIM])
        assert store.count() == 0
        store.close()
        refused = python(WRITER, folder, "refused", 1, 2, 0.2, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = refused.communicate(timeout=120)
        assert refused.returncode != 0 and "IndexLockedError" in err and "nothing was written" in err
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "saved"
    finally:
        holder.kill()
        holder.wait()
    assert stored_ids(folder) == ["held-0", "held-1"]


def test_kill_9_while_saving_leaves_a_saved_state(tmp_path):
    folder = tmp_path / "ix"
    open_store(folder, dim=DIM).close()
    writer = python(WRITER, folder, "w", 1000, 50, 30, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    saved = 0
    try:
        for line in writer.stdout:  # let it save a few generations, then kill it mid-way
            saved = json.loads(line)["saved"]
            if saved >= 400:
                break
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()
    assert saved >= 400
    store = open_store(folder)  # opens: CURRENT names a complete generation
    try:
        n = store.count()
        assert n >= saved and n % 50 == 0 and n == len(set(store.ids()))
        store.upsert(["after-kill"], [[1.0] * DIM])  # the dead writer's lock went with it
        store.save()
    finally:
        store.close()
    assert len(stored_ids(folder)) == n + 1
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".partial")]


@pytest.mark.slow
def test_cli_index_add_while_a_server_holds_the_folder(tiny_encoder, tiny_model_path, tmp_path):
    # Before: the CLI's documents were lost at the server's next save.
    from qembed.server.testing import running_server

    folder = tmp_path / "served"
    source = tmp_path / "more.jsonl"
    source.write_text("\n".join(json.dumps({"id": f"cli-{i}", "text": f"added from the command line {i}"})
                                for i in range(3)), encoding="utf-8")
    with running_server(encoder=tiny_encoder, index=str(folder)) as url:
        with httpx.Client(base_url=url, timeout=120) as http:
            r = http.post("/v1/documents", json={"documents": [{"id": "srv-0", "text": "added by the server"}]})
            assert r.status_code == 200, r.text
            cli = subprocess.run([sys.executable, "-m", "qembed.cli", "index", "add", str(source),
                                  "--index", str(folder), "--model", str(tiny_model_path), "--dtype", "float32",
                                  "--device", "cpu", "--json"], capture_output=True, text=True, timeout=300)
            assert cli.returncode == 0, cli.stderr
            assert json.loads(cli.stdout)["count"] == 4
            # the server sees the CLI's documents, and its next write keeps them
            r = http.post("/v1/search", json={"query": "command line", "mode": "bm25", "top_k": 10})
            assert {d["id"] for d in r.json()["data"]} >= {"cli-0", "cli-1", "cli-2"}
            r = http.post("/v1/documents", json={"documents": [{"id": "srv-1", "text": "the server again"}]})
            assert r.status_code == 200 and r.json()["count"] == 5
    assert stored_ids(folder) == ["cli-0", "cli-1", "cli-2", "srv-0", "srv-1"]
