"""The allowed-topics guard: a text must be about one of the agent's topics."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Unpack

from tether.controls.guard_base import Channel, GuardControl, GuardOptions, GuardResult
from tether.controls.guard_deny import OFF_LOOP_CHARS, TermMatcher, find_all
from tether.controls.pipeline import HookContext

if TYPE_CHECKING:
    import regex

_WORD = re.compile(r"\w+")


class TopicsGuard(GuardControl):
    """Flags texts that name none of the allowed topics' words (whole words, ignoring case).
    Texts of fewer than ``min_words`` words (a greeting, a thank-you) are let through."""

    guard = "topics"
    default_channels: tuple[Channel, ...] = ("user",)

    def __init__(
        self,
        allowed: Mapping[str, Sequence[str]],
        *,
        min_words: int = 4,
        **options: Unpack[GuardOptions],
    ) -> None:
        super().__init__(**options)
        if not allowed:
            raise ValueError("name at least one allowed topic")
        empty = [topic for topic, words in allowed.items() if not words]
        if empty:
            raise ValueError(f"topic {empty[0]!r} has no words")
        self.topics = tuple(allowed)
        self.min_words = min_words
        self._patterns: list[tuple[str, regex.Pattern[str] | TermMatcher]] = [
            (topic, TermMatcher(list(words))) for topic, words in allowed.items()
        ]

    def blocked_message(self, channel: Channel) -> str:
        if channel != "user":
            return super().blocked_message(channel)
        return f"I'm sorry, I can only help with questions about {', '.join(self.topics)}."

    async def judge(self, text: str, channel: Channel, ctx: HookContext | None) -> GuardResult:
        words = 0
        for _ in _WORD.finditer(text):
            words += 1
            if words >= self.min_words:
                break
        if words < self.min_words:
            return GuardResult(False, f"short text ({words} words): not checked for topic")
        if len(text) > OFF_LOOP_CHARS:
            found = await asyncio.to_thread(find_all, self._patterns, text)
        else:
            found = find_all(self._patterns, text)
        topics = tuple(dict.fromkeys(f[0] for f in found))
        if topics:
            return GuardResult(False, f"on topic: {', '.join(topics)}", categories=topics)
        return GuardResult(
            True,
            f"off topic: about none of {', '.join(self.topics)}",
            categories=("off_topic",),
        )
