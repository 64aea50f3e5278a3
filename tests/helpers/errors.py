"""Checking a CogdistillError's message."""

from __future__ import annotations

import pytest

from cogdistill.errors import CogdistillError


def expect(exc_type, fn, *needles: str) -> str:
    """Run fn; it must raise exc_type (a CogdistillError) whose message holds every needle."""
    with pytest.raises(exc_type) as err:
        fn()
    assert isinstance(err.value, CogdistillError), type(err.value)
    message = str(err.value)
    for needle in needles:
        assert needle in message, f"{needle!r} not in: {message}"
    return message
