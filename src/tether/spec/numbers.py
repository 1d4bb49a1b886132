"""Checks shared by the spec's numeric fields."""

from __future__ import annotations


def refuse_bool(value: object) -> object:
    """A ``before`` check for a numeric field: YAML reads ``true``/``yes`` as a bool, which
    pydantic would take as 1."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    return value
