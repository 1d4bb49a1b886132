"""The runs filters of the API and of the runs page: query parameters → ``RunQuery``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tether.store.query import ERROR_CATEGORIES, MAX_TEXT, RunQuery

MAX_API_PAGE = 500
"""Most runs one API page holds."""


class RunFilters(BaseModel):
    """Which runs to list: every filter given must hold (one given several times holds for
    any of its values). Empty values are ignored (a form's empty field)."""

    model_config = ConfigDict(extra="forbid")

    status: list[str] = Field(default_factory=list)
    """``running``, ``completed``, ``paused``, ``failed``."""
    outcome: list[str] = Field(default_factory=list)
    """``final_answer``, ``limit_exceeded``, ``loop_detected``, ``blocked``, ..."""
    agent: list[str] = Field(default_factory=list)
    """Agent names."""
    version: list[str] = Field(default_factory=list)
    """Agent versions, or their first characters."""
    model: list[str] = Field(default_factory=list)
    """Models the run requested."""
    since: datetime | None = None
    """Runs started at or after this time (ISO 8601; UTC without a zone)."""
    until: datetime | None = None
    """Runs started before this time."""
    min_cost: float | None = Field(default=None, ge=0)
    """Runs that cost at least this many US dollars."""
    min_latency_ms: float | None = Field(default=None, ge=0)
    """Runs that took at least this long."""
    error_category: list[str] = Field(default_factory=list)
    """Runs with an error of one of these categories."""
    tag: list[str] = Field(default_factory=list)
    """``key=value``: runs whose attributes hold that value."""
    q: str | None = Field(default=None, max_length=MAX_TEXT)
    """Text to find in the run's input or output (case-insensitive)."""
    limit: int = Field(default=50, ge=1, le=MAX_API_PAGE)
    """Most runs in the page."""
    cursor: str | None = Field(default=None, max_length=200)
    """``next_cursor`` of the page before."""

    @field_validator("error_category")
    @classmethod
    def _known_category(cls, values: list[str]) -> list[str]:
        for value in values:
            if value not in ERROR_CATEGORIES:
                raise ValueError(
                    f"unknown error category {value!r}; one of {', '.join(ERROR_CATEGORIES)}"
                )
        return values

    @field_validator("tag")
    @classmethod
    def _tag_shape(cls, values: list[str]) -> list[str]:
        for value in values:
            if "=" not in value or not value.split("=", 1)[0]:
                raise ValueError(f"a tag filter is key=value, got {value!r}")
        return values

    def query(self, project: str) -> RunQuery:
        """The store's query for these filters in ``project``; 422 with the reason for a
        value the store refuses."""
        try:
            return RunQuery(
                project=(project,),
                status=tuple(self.status),
                outcome=tuple(self.outcome),
                agent=tuple(self.agent),
                version=tuple(self.version),
                model=tuple(self.model),
                since=self.since,
                until=self.until,
                min_cost_usd=self.min_cost,
                min_latency_ms=self.min_latency_ms,
                error_category=tuple(self.error_category),
                tag=tuple(self.tag),
                text=self.q or None,
                limit=self.limit,
                cursor=self.cursor or None,
            )
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("query", *e["loc"])} for e in exc.errors()]
            ) from None

    def link(self, **changes: Any) -> str:
        """The query string of these filters with ``changes`` (a shareable URL)."""
        data = self.model_dump(exclude_defaults=True)
        data.update(changes)
        pairs: list[tuple[str, Any]] = []
        for key, value in data.items():
            if value is None or value == "" or value == []:
                continue
            if isinstance(value, list):
                pairs += [(key, v) for v in value]
            else:
                pairs.append((key, value.isoformat() if isinstance(value, datetime) else value))
        return urlencode(pairs)


def _clean(values: list[str] | None) -> list[str]:
    return [v for v in (values or []) if v.strip()]


def run_filters(
    status: Annotated[list[str] | None, Query()] = None,
    outcome: Annotated[list[str] | None, Query()] = None,
    agent: Annotated[list[str] | None, Query()] = None,
    version: Annotated[list[str] | None, Query()] = None,
    model: Annotated[list[str] | None, Query()] = None,
    since: Annotated[str | None, Query(description="ISO 8601 time")] = None,
    until: Annotated[str | None, Query(description="ISO 8601 time")] = None,
    min_cost: Annotated[str | None, Query(description="US dollars")] = None,
    min_latency_ms: Annotated[str | None, Query()] = None,
    error_category: Annotated[list[str] | None, Query()] = None,
    tag: Annotated[list[str] | None, Query(description="key=value")] = None,
    q: Annotated[str | None, Query(description="text in input or output")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_API_PAGE)] = 50,
    cursor: Annotated[str | None, Query()] = None,
) -> RunFilters:
    """The filters of a request (a form's empty fields are no filter)."""
    raw: dict[str, Any] = {
        "status": _clean(status),
        "outcome": _clean(outcome),
        "agent": _clean(agent),
        "version": _clean(version),
        "model": _clean(model),
        "error_category": _clean(error_category),
        "tag": _clean(tag),
        "limit": limit,
    }
    for name, value in (
        ("since", since),
        ("until", until),
        ("min_cost", min_cost),
        ("min_latency_ms", min_latency_ms),
        ("q", q),
        ("cursor", cursor),
    ):
        if value is not None and value.strip():
            raw[name] = value.strip()
    try:
        return RunFilters.model_validate(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("query", *e["loc"])} for e in exc.errors()]
        ) from None
