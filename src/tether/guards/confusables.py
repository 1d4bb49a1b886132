# ruff: noqa: RUF001  (the point of this table is letters that look alike)
"""Letters that look like Latin ones, mapped to the Latin letter (a small subset of Unicode's
confusables list: the Cyrillic, Greek, Armenian and IPA letters that attacks use to dodge word
filters; NFKC already folds fullwidth and mathematical letters)."""

from __future__ import annotations

_PAIRS = (
    # Cyrillic lower and upper case.
    "аaвbеeкkмmнhоoрpсcтtуyхxіiјjѕsԁdԛqԝwүyһhӏlɡgɑa"
    "АAВBЕEКKМMНHОOРPСCТTХXІIЈJЅSҮYԌGԚQԜWЁEЇI"
    # Greek lower and upper case.
    "αaβbεeιiκkνvοoρpτtυuχxγyΑAΒBΕEΖZΗHΙIΚKΜMΝNΟOΡPΤTΥYΧX"
    # Armenian, IPA and others.
    "օoսuցgհhոnıiȷjꓲIꓳOᴠvᴡwʏyɩiꞮI"
)
CONFUSABLES: dict[int, str] = {ord(_PAIRS[i]): _PAIRS[i + 1] for i in range(0, len(_PAIRS), 2)}
