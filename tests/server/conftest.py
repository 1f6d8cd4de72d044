"""Fixtures of the server tests: one live server on the tiny model, shared by a test module."""

from __future__ import annotations

from typing import Iterator

import pytest

from qembed.server.testing import ServerURL, running_server


@pytest.fixture(scope="module")
def server(tiny_encoder) -> Iterator[ServerURL]:
    """A live server on a free loopback port, serving the tiny fp32 model."""
    with running_server(encoder=tiny_encoder) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: ServerURL):
    """The real ``openai`` client pointed at the live server."""
    import openai

    with openai.Client(base_url=f"{server}/v1", api_key="EMPTY", max_retries=0) as c:
        yield c
