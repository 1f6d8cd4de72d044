"""Fuzz a live server against its own OpenAPI schema (issue 11).

Schemathesis generates requests for every documented operation from ``/openapi.json`` — valid
ones and ones that break the schema — and sends them to a real server (tiny model, a FAISS
knowledge base) on a loopback port. Every answer must be a non-5xx whose status the schema
documents (400 for bad input, not FastAPI's 422), whose content type and body match the schema,
and every request that breaks the schema must be refused with a 4xx. The number of examples is
bounded and their generation deterministic, so the test takes the same time on every run.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from qembed.config import Settings
from qembed.server.app import create_app
from qembed.server.testing import running_server

#: Examples per operation (valid and invalid together).
MAX_EXAMPLES = 40
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]


def _served_schema() -> dict:
    """The schema the live server serves: the same routes, built without loading a model."""
    return create_app(Settings()).openapi()


schema = schemathesis.openapi.from_dict(_served_schema())
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], deterministic=True,
                                max_examples=MAX_EXAMPLES)


@pytest.fixture(scope="module")
def fuzz_server(tiny_encoder, tmp_path_factory):
    index = tmp_path_factory.mktemp("fuzz") / "index"
    with running_server(encoder=tiny_encoder, index=str(index), max_client_batch_size=64,
                        max_request_bytes=1024 * 1024) as url:
        yield url


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_server_answers_every_generated_request_as_documented(case, fuzz_server):
    response = case.call(base_url=fuzz_server, timeout=120)
    case.validate_response(response, checks=CHECKS)
