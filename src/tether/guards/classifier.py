"""The trained injection classifier: a logistic regression over word, word-pair and
character n-gram features, scored chunk by chunk in pure Python.

Features of one chunk of tokens, each counted and divided by the square root of the chunk's
token count: ``w:<token>``, ``b:<token> <next token>``, and the character 3- and 4-grams of each
word (``c:<gram>``; character pairs for runs of CJK letters). Because the model is linear, a
token's unigram and n-gram weights are summed once and cached, so a chunk's score is a few dict
look-ups per token. The weights ship with the package (``injection_model.json.gz``); training
(``scripts/guards/train.py``) uses the same ``chunk_features`` function, so the two agree.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from itertools import accumulate, islice, repeat
from typing import Any

TOKEN = re.compile(r"[^\W_]+|[^\w\s]{1,3}")
"""Tokens: runs of letters and digits, and clusters of up to three symbols (``<|``, ``](``)."""
CHUNK_TOKENS = 64
"""Tokens per chunk."""
CHUNK_STRIDE = 32
"""Tokens between the starts of two chunks (chunks overlap by half)."""
MODEL_FILE = "injection_model.json.gz"
_CACHE_LIMIT = 200_000
_CACHE_TOKEN_CHARS = 64
"""Longest token whose weight is kept: the cache is bounded in entries, and longer tokens
(rare in text, and each a new one in random data) would make it hold whole inputs: a
megabyte-long word a request kept a megabyte a request."""


def tokenize(lowered: str) -> list[str]:
    """The tokens of a lower-cased text."""
    return TOKEN.findall(lowered)


def token_features(token: str) -> list[str]:
    """The unigram and character n-gram features of one token."""
    out = ["w:" + token]
    if not token[0].isalnum():
        return out
    if token.isascii():
        if len(token) >= 3:
            padded = "<" + token[:24] + ">"
            for n in (3, 4):
                for i in range(len(padded) - n + 1):
                    out.append("c:" + padded[i : i + n])
    else:
        run = token[:32]
        for i in range(len(run) - 1):
            out.append("c:" + run[i : i + 2])
    return out


def chunk_bounds(n_tokens: int) -> list[tuple[int, int]]:
    """``[start, end)`` token ranges of the chunks of a text of ``n_tokens`` tokens."""
    if n_tokens <= CHUNK_TOKENS:
        return [(0, n_tokens)]
    bounds = []
    start = 0
    while True:
        end = min(start + CHUNK_TOKENS, n_tokens)
        bounds.append((start, end))
        if end == n_tokens:
            return bounds
        start += CHUNK_STRIDE


def chunk_features(tokens: list[str]) -> dict[str, float]:
    """Feature values of one chunk (the reference the fast path in ``Model`` must equal)."""
    counts: dict[str, float] = {}
    prev = None
    for tok in tokens:
        for f in token_features(tok):
            counts[f] = counts.get(f, 0.0) + 1.0
        if prev is not None:
            b = "b:" + prev + " " + tok
            counts[b] = counts.get(b, 0.0) + 1.0
        prev = tok
    scale = 1.0 / math.sqrt(max(len(tokens), 1))
    return {f: v * scale for f, v in counts.items()}


@dataclass(frozen=True, slots=True)
class ChunkScore:
    """The classifier's score of one chunk."""

    logit: float
    """Log-odds that the chunk is an injection."""
    start: int
    """First token of the chunk."""
    end: int
    """One past its last token."""


class Model:
    """Weights of the linear model and the fast scorer."""

    def __init__(
        self,
        weights: dict[str, float],
        bias: float,
        channel_bias: dict[str, float],
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.weights = weights
        self.bias = bias
        self.channel_bias = channel_bias
        self.meta = meta or {}
        self._token_cache: dict[str, float] = {}
        # Bigram weights keyed by the token pair: a tuple of two (already hashed) strings is
        # cheaper to look up than a new "b:x y" string.
        self._bigrams: dict[tuple[str, str], float] = {}
        for name, w in weights.items():
            if name.startswith("b:") and " " in name:
                first, second = name[2:].split(" ", 1)
                self._bigrams[(first, second)] = w

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Model:
        """A model from the shipped JSON shape."""
        return cls(
            dict(data["weights"]),
            float(data["bias"]),
            {k: float(v) for k, v in data["channel_bias"].items()},
            data.get("meta"),
        )

    def to_json(self) -> dict[str, Any]:
        """The shipped JSON shape."""
        return {
            "bias": self.bias,
            "channel_bias": self.channel_bias,
            "meta": self.meta,
            "weights": self.weights,
        }

    def _token_weight(self, token: str) -> float:
        w = self._token_cache.get(token)
        if w is None:
            get = self.weights.get
            w = sum(get(f, 0.0) for f in token_features(token))
            if len(token) > _CACHE_TOKEN_CHARS:
                return w
            if len(self._token_cache) >= _CACHE_LIMIT:
                self._token_cache.clear()
            self._token_cache[token] = w
        return w

    def _token_weights(self, tokens: list[str]) -> list[float]:
        """The summed unigram and character n-gram weight of each token (cached per token)."""
        cache = self._token_cache
        found = list(map(cache.get, tokens))
        if None in found:
            tw = self._token_weight
            found = [tw(t) if w is None else w for t, w in zip(tokens, found, strict=True)]
        return found  # type: ignore[return-value]

    def chunk_scores(self, tokens: list[str], channel: str) -> list[ChunkScore]:
        """The score of every chunk of ``tokens``."""
        n = len(tokens)
        base = self.bias + self.channel_bias.get(channel, 0.0)
        if n == 0:
            return [ChunkScore(base, 0, 0)]
        # prefix[i] = sum of token weights of tokens[:i]; bigram weights likewise, a bigram
        # counted with its second token (so a chunk [s, e) holds bigrams s+1 .. e-1). The
        # look-ups and sums run in C (map, accumulate); no Python code per token.
        prefix = list(accumulate(self._token_weights(tokens), initial=0.0))
        pairs = zip(tokens, islice(tokens, 1, None), strict=False)
        # bigram[k] = sum of the first k bigrams = the bigrams ending at tokens 1..k
        bigram = list(accumulate(map(self._bigrams.get, pairs, repeat(0.0)), initial=0.0))
        out = []
        for s, e in chunk_bounds(n):
            # bigrams s+1 .. e-1 are the (s+1)-th .. (e-1)-th: bigram[e-1] - bigram[s]
            total = prefix[e] - prefix[s] + bigram[e - 1] - bigram[s]
            out.append(ChunkScore(base + total / math.sqrt(e - s), s, e))
        return out

    def reference_logit(self, tokens: list[str], channel: str) -> float:
        """The logit of one chunk through ``chunk_features`` (slow; for tests and training)."""
        feats = chunk_features(tokens)
        return (
            self.bias
            + self.channel_bias.get(channel, 0.0)
            + sum(self.weights.get(f, 0.0) * v for f, v in feats.items())
        )


def load_model(path: str | None = None) -> Model:
    """The shipped model, or the one at ``path`` (``.json`` or ``.json.gz``)."""
    if path is None:
        raw = resources.files("tether.guards").joinpath(MODEL_FILE).read_bytes()
    else:
        with open(path, "rb") as f:
            raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return Model.from_json(json.loads(raw))


def sigmoid(z: float) -> float:
    """The logistic function, safe for large ``|z|``."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def iter_chunks(tokens: list[str]) -> Iterable[list[str]]:
    """The chunks of ``tokens`` as token lists (training uses this)."""
    for s, e in chunk_bounds(len(tokens)):
        yield tokens[s:e]
