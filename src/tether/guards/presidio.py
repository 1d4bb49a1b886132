"""Presidio's analyzer as a guard (``guard: presidio``), the broader and slower mode of PII
detection: ``pip install 'tether[presidio]'``.

Configured to run offline. Without a spaCy model it runs Presidio's pattern recognizers on
its ``NoOpNlpEngine`` (e-mail, phone, card, IBAN, IP, US and other national ids, crypto
wallets, URLs, dates, ...): the same ground as the built-in ``pii`` guard and more, at some
9 / 34 ms p50/p99 on 2 KB on the machine of ``docs/benchmarks.md`` against 0.03 / 0.06 ms.
With ``TETHER_PRESIDIO_SPACY_MODEL`` naming an installed spaCy model (``en_core_web_lg``,
installed by the user: Tether never downloads one) its NLP recognizers join in (names,
places, organisations). ``tldextract``, which Presidio's e-mail recognizer calls, is given
its bundled copy of the Public Suffix List, so nothing is fetched.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any

from tether.core import TetherError
from tether.guards.findings import Detection, Finding, detection

SPACY_MODEL_ENV = "TETHER_PRESIDIO_SPACY_MODEL"
_lock = threading.Lock()


def _offline_tldextract() -> None:
    """Point the extractor ``tldextract.extract`` uses at the suffix list bundled with the
    package: no fetch from the network, no cache directory."""
    import tldextract
    import tldextract.tldextract as impl

    with _lock:
        if getattr(impl.TLD_EXTRACTOR, "_tether_offline", False):
            return
        extractor = tldextract.TLDExtract(
            suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True
        )
        extractor._tether_offline = True
        impl.TLD_EXTRACTOR = extractor


def presidio_analyzer(spacy_model: str | None = None) -> Any:
    """A Presidio ``AnalyzerEngine`` that never reaches the network: the pattern recognizers
    on ``NoOpNlpEngine``, or with ``spacy_model`` (an installed spaCy package or a model
    directory) its NLP recognizers too."""
    try:
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NlpEngineProvider, NoOpNlpEngine
    except ImportError:
        raise TetherError(
            "the presidio guard needs Presidio's analyzer, which is not installed",
            hint="pip install 'tether[presidio]'",
        ) from None
    _offline_tldextract()
    if spacy_model:
        import spacy.util

        if not (spacy.util.is_package(spacy_model) or Path(spacy_model).exists()):
            raise TetherError(
                f"spaCy model {spacy_model!r} is not installed (Tether never downloads one)",
                hint=f"install it with your package manager, or unset {SPACY_MODEL_ENV} for "
                "the pattern recognizers alone",
            )
        nlp_engine = NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                "models": [{"lang_code": "en", "model_name": spacy_model}],
            }
        ).create_engine()
    else:
        nlp_engine = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "no_op"}])
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp_engine)
    if not spacy_model:  # recognizers that need NLP artifacts would find nothing
        registry.remove_recognizer("SpacyRecognizer")
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])


class PresidioPiiDetector:
    """Presidio's analyzer behind the :class:`~tether.guards.findings.Detector` protocol."""

    name = "presidio"

    def __init__(
        self, kinds: Collection[str] | None = None, *, spacy_model: str | None = None
    ) -> None:
        """``kinds``: Presidio entity names to report (default: all it supports);
        ``spacy_model``: default ``TETHER_PRESIDIO_SPACY_MODEL``, else none."""
        model = spacy_model if spacy_model is not None else os.environ.get(SPACY_MODEL_ENV)
        self._analyzer = presidio_analyzer(model or None)
        supported = set(self._analyzer.get_supported_entities(language="en"))
        unknown = set(kinds or ()) - supported
        if unknown:
            raise TetherError(
                f"unknown Presidio entity kind(s): {', '.join(sorted(unknown))}",
                hint=f"supported here: {', '.join(sorted(supported))}",
            )
        self._entities = sorted(kinds) if kinds else None

    def scan(self, text: str) -> list[Finding]:
        """Presidio's results on ``text`` as findings, in text order."""
        results = self._analyzer.analyze(text=text, language="en", entities=self._entities)
        found = [Finding(r.entity_type, r.start, r.end, float(r.score)) for r in results]
        return sorted(found, key=lambda f: (f.start, f.end))

    def detect(self, text: str) -> Detection:
        return detection(self.name, self.scan(text))
