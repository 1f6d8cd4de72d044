"""The progress lines of a Ray run (rows done / total with a rate), without Ray."""

from __future__ import annotations

import logging

from qembed.scale.embed import Progress


def test_progress_lines_count_rows_and_end_at_the_total(caplog):
    caplog.set_level(logging.INFO, logger="qembed.scale.embed")
    progress = Progress(10, every=0.0)
    for rows in (4, 4, 2):
        progress.update(rows)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("first rows embedded after")
    done = [m for m in messages if "rows done" in m]
    assert [m.split(" rows done")[0] for m in done] == ["4/10", "8/10", "10/10"]
    assert "(100%)" in done[-1] and "rows/s" in done[-1] and "left" not in done[-1]
    assert "left" in done[0]


def test_progress_lines_are_spaced_but_the_last_always_shows(caplog):
    caplog.set_level(logging.INFO, logger="qembed.scale.embed")
    progress = Progress(30, every=3600.0)
    for _ in range(3):
        progress.update(10)
    done = [r.getMessage() for r in caplog.records if "rows done" in r.getMessage()]
    assert len(done) == 2 and done[-1].startswith("30/30")  # the first update and the end
