"""A self-contained HTML report of a clustering: a 2-D map and a table of clusters.

In: a :class:`~qembed.clustering.types.ClusterResult` (with its embeddings). Out: one HTML file
that needs no network: the map is inline SVG (one circle per text, coloured by cluster, the text
shown on hover by a few lines of inline JavaScript and, without JavaScript, by the SVG
``<title>`` tooltip), followed by a table of clusters with their label, size, keywords, summary
(a few members that cover the cluster, chosen by MMR) and most central members. The projection
is PCA (scikit-learn) by default; ``projection="umap"`` uses UMAP
(umap-learn, cosine metric) and ``"auto"`` uses UMAP when it is installed and there are at least
:data:`UMAP_MIN_POINTS` texts. Above ``max_points`` texts the map shows a seeded random sample
(the table always covers every cluster).
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

import numpy as np

from qembed.clustering.types import ClusterResult
from qembed.errors import InputError

logger = logging.getLogger(__name__)

PROJECTIONS = ("pca", "umap", "auto")
UMAP_MIN_POINTS = 30
#: Tableau-like categorical palette; clusters beyond it get evenly spaced hues.
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f",
)
OUTLIER_COLOUR = "#b8b8b8"

_WIDTH, _HEIGHT, _PAD = 900, 560, 24

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans","Noto Sans CJK SC","Noto Sans Arabic",
sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px}p.meta{color:#555;margin:0 0 16px;font-size:14px}
.map{position:relative;display:inline-block;border:1px solid #ddd;border-radius:6px;background:#fafafa}
.map circle{stroke:#fff;stroke-width:.6;cursor:pointer}.map circle:hover{stroke:#000;stroke-width:1.5}
#tip{position:absolute;pointer-events:none;display:none;max-width:360px;background:#222;color:#fff;
padding:6px 8px;border-radius:4px;font-size:13px;line-height:1.35;white-space:pre-wrap}
.legend{margin:10px 0 20px;font-size:13px}.legend span{display:inline-block;margin:2px 12px 2px 0}
.swatch{display:inline-block;width:11px;height:11px;border-radius:50%;margin-right:5px;vertical-align:-1px}
table{border-collapse:collapse;font-size:14px;width:100%;max-width:1200px}
th,td{border-bottom:1px solid #e5e5e5;text-align:left;vertical-align:top;padding:6px 8px}
th{background:#f3f3f3}td.kw{color:#333}td ul{margin:0;padding-left:18px}
"""

_JS = """
(function(){var tip=document.getElementById('tip'),box=document.querySelector('.map');
box.addEventListener('mousemove',function(e){var t=e.target;
if(t.tagName.toLowerCase()!=='circle'){tip.style.display='none';return;}
var r=box.getBoundingClientRect();tip.textContent=t.getAttribute('data-label')+'\\n'+t.getAttribute('data-text');
tip.style.left=(e.clientX-r.left+12)+'px';tip.style.top=(e.clientY-r.top+12)+'px';tip.style.display='block';});
box.addEventListener('mouseleave',function(){tip.style.display='none';});})();
"""


def colour(cluster_id: int) -> str:
    """The colour of a cluster on the map (grey for outliers)."""
    if cluster_id < 0:
        return OUTLIER_COLOUR
    if cluster_id < len(PALETTE):
        return PALETTE[cluster_id]
    hue = (cluster_id * 137.508) % 360  # golden angle: neighbours far apart
    return f"hsl({hue:.0f},60%,50%)"


def project_2d(vectors: np.ndarray, method: str = "pca", seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates of ``vectors`` and the projection actually used (``pca`` or ``umap``)."""
    method = (method or "pca").lower()
    if method not in PROJECTIONS:
        raise InputError(f"unknown projection {method!r}; use one of: {', '.join(PROJECTIONS)}",
                         param="projection")
    n = len(vectors)
    if method in ("umap", "auto"):
        from qembed.extras import available, require

        if method == "umap":
            require("umap", "projection 'umap'")
        have_umap = available("umap")
        if have_umap and (method == "umap" or n >= UMAP_MIN_POINTS) and n >= 4:
            import umap

            coords = umap.UMAP(n_components=2, metric="cosine", random_state=seed, n_jobs=1,
                               n_neighbors=max(2, min(15, n - 1))).fit_transform(vectors)
            return np.asarray(coords, dtype=np.float64), "umap"
    if n < 2 or vectors.shape[1] < 2:
        return np.zeros((n, 2)), "pca"
    from sklearn.decomposition import PCA

    coords = PCA(n_components=2, random_state=seed).fit_transform(vectors)
    return np.asarray(coords, dtype=np.float64), "pca"


def _scale(coords: np.ndarray) -> np.ndarray:
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    span = np.where(hi - lo > 1e-12, hi - lo, 1.0)
    unit = (coords - lo) / span
    x = _PAD + unit[:, 0] * (_WIDTH - 2 * _PAD)
    y = _HEIGHT - _PAD - unit[:, 1] * (_HEIGHT - 2 * _PAD)
    return np.stack([x, y], axis=1)


def render_report(
    result: ClusterResult,
    *,
    title: str = "qembed clusters",
    projection: str = "pca",
    max_points: int = 5000,
    seed: int = 0,
) -> str:
    """The report as an HTML string (see the module docstring)."""
    if result.embeddings is None:
        raise InputError("this clustering result has no embeddings to draw a map from")
    n = len(result.texts)
    idx = np.arange(n)
    if n > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
    coords, used = project_2d(result.embeddings[idx], projection, seed)
    xy = _scale(coords)
    radius = 5.0 if len(idx) <= 300 else 3.5 if len(idx) <= 2000 else 2.2
    circles = []
    # outliers first so clusters are drawn on top
    for j in sorted(range(len(idx)), key=lambda j: result.texts[idx[j]].cluster >= 0):
        t = result.texts[idx[j]]
        text = html.escape(t.text if len(t.text) <= 300 else t.text[:300] + "…", quote=True)
        label = html.escape(f"#{t.cluster} {t.label}", quote=True)
        circles.append(
            f'<circle cx="{xy[j, 0]:.1f}" cy="{xy[j, 1]:.1f}" r="{radius}" fill="{colour(t.cluster)}" '
            f'data-label="{label}" data-text="{text}"><title>{label}: {text}</title></circle>'
        )
    legend = "".join(
        f'<span><i class="swatch" style="background:{colour(c.cluster)}"></i>'
        f'#{c.cluster} <bdi>{html.escape(c.label)}</bdi> ({c.size})</span>'
        for c in result.clusters
    )
    rows = []
    for c in result.clusters:
        examples = "".join(f"<li><bdi>{html.escape(e)}</bdi></li>" for e in c.examples)
        summary = "".join(f"<li><bdi>{html.escape(e)}</bdi></li>" for e in getattr(c, "summary", []))
        rows.append(
            f'<tr><td><i class="swatch" style="background:{colour(c.cluster)}"></i>{c.cluster}</td>'
            f"<td><bdi>{html.escape(c.label)}</bdi></td><td>{c.size}</td>"
            f'<td class="kw">{", ".join(f"<bdi>{html.escape(w)}</bdi>" for w in c.keywords)}</td>'
            f'<td class="summary"><ul>{summary}</ul></td><td><ul>{examples}</ul></td></tr>'
        )
    n_out = sum(1 for t in result.texts if t.cluster == -1)
    meta = (f"{n} texts · {result.n_clusters} clusters" + (f" · {n_out} outliers" if n_out else "")
            + f" · method {html.escape(result.method)} · map {used.upper()}"
            + (f" (random sample of {len(idx)})" if len(idx) < n else ""))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class=\"meta\">{meta}</p>"
        f'<div class="map"><svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}" '
        f'viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" aria-label="2-D map of the texts">'
        + "".join(circles)
        + '</svg><div id="tip"></div></div>'
        f'<div class="legend">{legend}</div>'
        "<table><thead><tr><th>#</th><th>label</th><th>size</th><th>keywords</th><th>summary</th>"
        "<th>most central</th></tr>"
        "</thead><tbody>" + "".join(rows) + "</tbody></table>"
        f"<script>{_JS}</script></body></html>\n"
    )


def write_report(result: ClusterResult, path: str | Path, **kwargs: Any) -> Path:
    """Write :func:`render_report` to ``path`` (UTF-8) and return the path."""
    path = Path(path)
    page = render_report(result, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    logger.info("wrote the cluster report to %s", path)
    return path
