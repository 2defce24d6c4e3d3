"""Full-text search that works for Chinese with core PostgreSQL only.

PostgreSQL's parsers do not segment Chinese, and pgserver ships no contrib extensions, so we
segment in Python, the same way on write and on query, and store the result in a `simple`
configuration tsvector. A run of CJK characters becomes its single characters and its
overlapping bigrams (有机西红柿 → 有 机 西 红 柿 有机 机西 西红 红柿); other words are
lower-cased. A query matches when every one of its bigrams (or its one character) is there,
so 西红柿 finds 有机西红柿 and 苹果 finds 红富士苹果; other words, in any script (Latin,
the Arabic of Uyghur, Tibetan, Mongolian, Hangul, …), match as prefixes (tomato finds
tomatoes).
"""

import re
import unicodedata

from django.contrib.postgres.search import SearchQuery

CONFIG = "simple"
# Ideographs: the basic plane's, 〇 (a numeral in dates and names), and the supplementary
# and tertiary planes' (extensions B to H), in which many names and places are written.
_CJK = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
_IS_CJK = re.compile(rf"[{_CJK}]")
MAX_QUERY_TERMS = 16


def _bigrams(run: str) -> list[str]:
    return [run[i : i + 2] for i in range(len(run) - 1)]


def _folded(text: str | None) -> str:
    """NFKC, lower case: full-width letters and digits (`ｔｏｍａｔｏ`, `５斤`, as Chinese
    input methods type them) as ASCII, accents typed as combining marks as one letter."""
    return unicodedata.normalize("NFKC", text or "").lower()


def _runs(text: str) -> list[str]:
    """The text's words: runs of CJK ideographs, and runs of letters and digits of any
    other script with the marks on them (Tibetan's and Mongolian's vowels, Arabic's
    vowel signs), which are no letters of their own; anything else (spaces, punctuation,
    symbols, emoji) parts them. Only Latin letters and digits were words before, so a word
    in another script was neither indexed nor searched (a query of it filtered nothing)."""
    runs: list[str] = []
    run, run_kind = "", ""
    for char in text:
        category = unicodedata.category(char)
        if _IS_CJK.match(char):
            kind = "cjk"
        elif category[0] in "LN" or (category[0] == "M" and run_kind == "word"):
            kind = "word"
        else:
            kind = ""
        if kind != run_kind and run:
            runs.append(run)
            run = ""
        run, run_kind = (run + char if kind else ""), kind
    if run:
        runs.append(run)
    return runs


def segment(text: str) -> str:
    """The text as space-separated lexemes for `to_tsvector('simple', …)`."""
    lexemes: list[str] = []
    for run in _runs(_folded(text)):
        if _IS_CJK.match(run):
            lexemes.extend(run)
            lexemes.extend(_bigrams(run))
        else:
            lexemes.append(run)
    return " ".join(lexemes)


def query_terms(text: str) -> list[str]:
    """tsquery terms (already quoted) that a document must all contain."""
    terms: list[str] = []
    for run in _runs(_folded(text)):
        if _IS_CJK.match(run):
            terms.extend(f"'{lexeme}'" for lexeme in (_bigrams(run) or [run]))
        else:
            terms.append(f"'{run}':*")
    return list(dict.fromkeys(terms))[:MAX_QUERY_TERMS]


def search_query(text: str) -> SearchQuery | None:
    """A SearchQuery for `text`, or None when it holds no searchable word."""
    terms = query_terms(text)
    if not terms:
        return None
    # Safe as raw: every term is letters, digits and marks only (no quote, no backslash),
    # quoted by query_terms.
    return SearchQuery(" & ".join(terms), search_type="raw", config=CONFIG)
