"""Option types of the CLI: what a value must be, checked by click, so a bad one is a usage
error naming its option (never a traceback)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import click

from tether.cli.terminal import visible
from tether.core.outcome import EndStatus, Outcome

RUN_STATUSES = ("running", *get_args(EndStatus))
OUTCOMES = tuple(o.value for o in Outcome)


class _Text(click.types.StringParamType):
    """Text an id or a name can be: not empty, and valid UTF-8 (argv bytes that are not
    arrive as lone surrogates, which no database and no output can take)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = super().convert(value, param, ctx)
        if not text.strip():
            self.fail("must not be empty", param, ctx)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            self.fail(f"{visible(text)} is not valid UTF-8 text", param, ctx)
        return text


TEXT = _Text()

_AGE = re.compile(r"(\d{1,9})\s*([smhdw])", re.ASCII)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class _When(click.ParamType):  # type: ignore[type-arg]
    """A moment: an ISO 8601 time (UTC unless it gives an offset), or an age (``30m``,
    ``1h``, ``2d``, ``1w``: that long before now)."""

    name = "time"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        age = _AGE.fullmatch(text)
        try:
            if age:
                return datetime.now(UTC) - timedelta(**{_UNITS[age[2]]: int(age[1])})
            moment = datetime.fromisoformat(text)
        except (ValueError, OverflowError):
            moment = None
        if moment is None:
            self.fail(
                f"{visible(repr(text))} is not a time: give an ISO time (2026-11-23T10:00, UTC "
                "unless it has an offset) or an age (30m, 1h, 2d, 1w)",
                param,
                ctx,
            )
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


WHEN = _When()


class _Cursor(click.ParamType):  # type: ignore[type-arg]
    """A page cursor, as ``traces list`` printed it."""

    name = "cursor"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from tether.core import InvalidQuery
        from tether.store.query import decode_cursor

        text = str(value)
        try:
            decode_cursor(text)
        except InvalidQuery as exc:
            self.fail(visible(exc.message), param, ctx)
        return text


CURSOR = _Cursor()
