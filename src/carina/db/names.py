"""Search forms of person names, for fuzzy matching (QIDO-RS ``fuzzymatching=true``)."""

from __future__ import annotations

import re
import unicodedata

_SEPARATORS = re.compile(r"[\^=,.\s\-']+")


def fold(text: str) -> str:
    """``text`` without case and diacritics: ``"Müller"`` and ``"MULLER"`` fold alike.

    Diacritics are dropped from Latin, Greek and Cyrillic letters only; marks that change a letter
    in other scripts (Japanese dakuten, for example) are kept.
    """
    kept: list[str] = []
    base = ""
    for char in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(char):
            if base and ord(base) < 0x0530:
                continue
        else:
            base = char
        kept.append(char)
    return unicodedata.normalize("NFKC", "".join(kept)).casefold()


def name_words(name: str) -> list[str]:
    """The folded words of a DICOM person name, in order (components and groups alike)."""
    return [word for word in _SEPARATORS.split(fold(name)) if word]


def search_form(name: str) -> str:
    """The stored search form of a person name: its folded words, each preceded by a space.

    A query word ``w`` then matches a word starting with ``w`` through ``LIKE '% w%'``, in any
    component order.
    """
    words = name_words(name)
    return "".join(" " + word for word in words)[:400]
