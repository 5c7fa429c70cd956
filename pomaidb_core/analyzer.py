"""The text analyzer: how a record's text and a keyword query become terms.

Both sides go through the same analyzer, fixed per membrane at creation (its
settings live in the membrane's IndexParams in the manifest), so a segment's
persisted keyword index never disagrees with the queries run against it:

1. case folding with `str.casefold` (Unicode-aware: "Straße" matches "STRASSE");
2. Unicode word tokenization: maximal runs of `\\w` characters (letters, digits and
   underscore in every script), except that CJK ideographs and kana are one token
   per character, as in Lucene's StandardAnalyzer: those scripts do not separate
   words with spaces, and a whole run as one token would make a query match only
   the exact run it came from;
3. optional stop words (`text_stopwords="english"`: Lucene's English list);
4. optional stemming (`text_stemmer="english"`: Snowball English through PyStemmer,
   the `stemming` extra).

A query of any language therefore yields terms (possibly none, which matches
nothing); it never raises.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from .errors import InvalidArgumentError

Analyze = Callable[[str], list[str]]

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")

STEMMERS = (None, "english")
STOPWORD_LISTS = (None, "english")
# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET.
_ENGLISH_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their "
    "then there these they this to was will with".split())


def check_settings(stemmer: object, stopwords: object) -> None:
    if stemmer not in STEMMERS:
        raise InvalidArgumentError(f"text_stemmer must be one of {STEMMERS}, got {stemmer!r}")
    if stopwords not in STOPWORD_LISTS:
        raise InvalidArgumentError(
            f"text_stopwords must be one of {STOPWORD_LISTS}, got {stopwords!r}")


@functools.lru_cache(maxsize=8)
def analyzer(stemmer: str | None = None, stopwords: str | None = None) -> Analyze:
    """The function text -> terms for these settings (one instance per setting, cached)."""
    check_settings(stemmer, stopwords)
    stop = _ENGLISH_STOPWORDS if stopwords == "english" else frozenset()
    stem = _stemmer(stemmer)

    def analyze(text: str) -> list[str]:
        tokens = _TOKEN.findall(text.casefold())
        if stop:
            tokens = [t for t in tokens if t not in stop]
        return stem(tokens) if stem is not None else tokens

    return analyze


def _stemmer(name: str | None) -> Callable[[list[str]], list[str]] | None:
    if name is None:
        return None
    try:
        import Stemmer  # PyStemmer: an optional extra
    except ImportError:
        raise InvalidArgumentError(
            "text_stemmer='english' needs PyStemmer: pip install 'pomaidb-core[stemming]'"
        ) from None
    return Stemmer.Stemmer(name).stemWords
