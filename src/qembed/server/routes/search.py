"""HTTP routes of this feature (filled in by its issue).

Contract: export `router` (a FastAPI APIRouter); optionally `setup(app, settings)`, called once
the encoder is ready. Handlers reach the batched encoder as `request.app.state.encoder` and call
it from a worker thread (`run_in_threadpool`), never on the event loop.
"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
