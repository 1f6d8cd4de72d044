"""The HTML report: self-contained, escaped, and drawn by headless Chromium (screenshot not blank)."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

import qembed
from .conftest import CHINESE, MULTILINGUAL, blobs, flatten
from qembed.errors import InputError
from qembed.clustering.report import PALETTE, render_report, write_report


def _result(extra: list[str] = ()):
    texts = flatten(CHINESE)[0] + flatten(MULTILINGUAL)[0] + list(extra)
    x, _ = blobs([5, 4, 3, 5, 5 + len(extra)], dim=24, spread=0.05)
    return qembed.cluster(None, texts, embeddings=x, clusters=5, seed=0)


def test_report_is_self_contained_and_escaped():
    res = _result(extra=['<script>alert("x")</script> & "quotes"'])
    page = render_report(res, title="Tickets <today>")
    assert page.startswith("<!DOCTYPE html>")
    # no network: no external script, stylesheet, image or font
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    assert page.count("<circle") == len(res.texts)
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    assert "Tickets &lt;today&gt;" in page
    for c in res.clusters:
        assert c.label in page
        assert all(k in page for k in c.keywords)
    assert "花呗" in page and "الدفع" in page


def test_report_projection_choices():
    res = _result()
    assert "map PCA" in render_report(res)
    with pytest.raises(InputError, match="unknown projection"):
        render_report(res, projection="tsne")


@pytest.mark.slow
def test_report_umap_map(tmp_path):
    import umap  # noqa: F401  (the umap extra is part of `all`, which `make test` installs)
    res = _result()
    path = write_report(res, tmp_path / "r.html", projection="umap")
    page = path.read_text(encoding="utf-8")
    assert "map UMAP" in page and page.count("<circle") == len(res.texts)


def test_large_result_maps_a_sample():
    x, _ = blobs([150, 150], dim=8)
    res = qembed.cluster(None, [f"t{i} word{i % 7}" for i in range(300)], embeddings=x, clusters=2)
    page = render_report(res, max_points=120)
    assert page.count("<circle") == 120 and "random sample of 120" in page


# --------------------------------------------------------------------------- headless Chromium


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _read_png(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes) with zlib only."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour_type, _, _, interlace = header
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, header
    bpp = 3 if colour_type == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=y * (stride + 1) + 1).astype(np.int32)
        if ftype == 0:
            cur = line
        elif ftype == 2:
            cur = (line + prev) & 255
        elif ftype == 1:
            cur = line.copy()
            for i in range(bpp, stride):
                cur[i] = (cur[i] + cur[i - bpp]) & 255
        elif ftype == 3:
            cur = line.copy()
            for i in range(stride):
                left = cur[i - bpp] if i >= bpp else 0
                cur[i] = (cur[i] + ((left + prev[i]) >> 1)) & 255
        elif ftype == 4:
            cur = line.copy()
            for i in range(stride):
                a = cur[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[i] = (cur[i] + pred) & 255
        else:
            raise AssertionError(f"bad PNG filter {ftype}")
        out[y] = cur
        prev = cur
    return out.reshape(height, width, bpp)[:, :, :3]


def test_report_renders_in_headless_chromium(tmp_path):
    browser = _chromium()
    # `make test` installs Chromium (`make chromium`); without it this test fails rather than
    # pretending the report renders
    assert browser is not None, "Chromium is not installed (apt-get install -y chromium): the report cannot be rendered"
    res = _result()
    page = write_report(res, tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,900",
           page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": str(tmp_path)})
    assert shot.exists(), f"Chromium wrote no screenshot (rc={proc.returncode}): {proc.stderr[-2000:]}"
    img = _read_png(shot)
    assert img.shape[:2] == (900, 1200)
    pixels = img.reshape(-1, 3)
    non_white = (pixels < 245).any(axis=1).mean()
    assert non_white > 0.01, f"screenshot is blank ({non_white:.4%} non-white pixels)"
    colours = {tuple(p) for p in pixels[::7]}
    assert len(colours) > 20
    # every cluster colour of the map is on screen (the circles were drawn)
    for c in res.clusters:
        rgb = tuple(int(PALETTE[c.cluster][i:i + 2], 16) for i in (1, 3, 5))
        hits = (np.abs(pixels.astype(int) - rgb).sum(axis=1) <= 6).sum()
        assert hits >= 30, f"cluster {c.cluster} colour {PALETTE[c.cluster]} not drawn ({hits} pixels)"
