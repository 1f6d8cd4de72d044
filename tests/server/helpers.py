"""Assertions shared by the server tests."""

from __future__ import annotations


def assert_error(response, status: int, *, param: str | None = None, code: str | None = None,
                 contains: str | None = None) -> dict:
    """Check an OpenAI-shaped error response and return its ``error`` object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"], error
    if param is not None:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    if contains is not None:
        assert contains in error["message"], error
    return error
