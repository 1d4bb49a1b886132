"""Jinja2 filters of the UI's templates (formatting only: escaping is Jinja's autoescape)."""

from __future__ import annotations

import json
from typing import Any

import jinja2
from markupsafe import Markup, escape

from tether.core.text import visible
from tether.server.clip import TEXT_CHARS
from tether.trace.readout import fmt_ns


def when(ns: int | None) -> str:
    """A time in nanoseconds since the epoch as ``YYYY-MM-DD HH:MM:SS`` UTC."""
    return "—" if ns is None else fmt_ns(ns)


def ms(value: float | None) -> str:
    """A latency: ``850 ms``, ``3.2 s``; under 10 ms with a tenth (``0.4 ms``: a tool call of
    a fraction of a millisecond showed ``0 ms``, as if it took no time)."""
    if value is None:
        return "—"
    if value < 9.95:
        return f"{value:.1f} ms"
    return f"{value:,.0f} ms" if value < 1000 else f"{value / 1000:,.1f} s"


def usd(value: float | None) -> str:
    """A cost: ``$0.0123``; unknown (an unpriced model) as ``unpriced``."""
    if value is None:
        return "unpriced"
    if value == 0:
        return "$0"
    if value >= 0.01:
        return f"${value:,.4f}"
    return f"${value:.6f}" if value >= 0.000001 else f"${value:.2e}"


def total_cost(group: Any) -> str:
    """A dashboard group's cost (``cost_usd`` of its priced runs, ``unpriced`` runs
    apart): ``$0.0123 +2 unpriced``; a group none of whose runs is priced is ``unpriced``,
    not ``$0`` (free)."""
    if group.unpriced and group.unpriced >= group.requests:
        return "unpriced"
    shown = usd(group.cost_usd)
    return f"{shown} +{group.unpriced} unpriced" if group.unpriced else shown


def pretty(value: Any) -> str:
    """Any value as readable text: JSON indented (text that is JSON too). Text nested deeper
    than Python's stack reads is shown as it is: ``[[[...]]]`` 10,000 deep in a tool's result
    (a page a tool fetched, a span anyone with an agent key sends) raised RecursionError,
    and the page of that span answered 500."""
    try:
        if isinstance(value, str):
            try:
                found = json.loads(value)
            except ValueError:
                return value
            return found if isinstance(found, str) else _indented(found)
        return _indented(value)
    except RecursionError:
        return value if isinstance(value, str) else "(nested too deeply to show)"


def _indented(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def clip(value: Any, link: str | None = None) -> Any:
    """A text up to ``TEXT_CHARS`` characters, then how many more there are and a link to the
    whole (``link``): a run's 5 MB input made its page 5 MB, its messages and tool arguments
    as much again each."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= TEXT_CHARS:
        return value
    more = f"… {len(text) - TEXT_CHARS:,} more characters"
    if link:
        anchor = f'<a class="whole" href="{escape(link)}" target="_blank" rel="noopener">'
        more += f" · {anchor}the whole text</a>"
    return escape(visible(text[:TEXT_CHARS])) + Markup(f'<span class="clipped">{more}</span>')


def install(env: jinja2.Environment) -> None:
    env.filters.update(when=when, ms=ms, usd=usd, total_cost=total_cost, pretty=pretty, clip=clip)
