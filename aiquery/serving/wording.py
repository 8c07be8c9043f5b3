"""How the local models cut text into words, sentences and keywords, and hash it stably."""

from __future__ import annotations

import hashlib
import re

MAX_ANSWER_WORDS = 40
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
WORD = re.compile(r"\w+")
_STOPWORD_TEXT = (
    "a an and are as at be but by for from had has have he her his i in is it its me my not of"
    " on or our she that the their them then there they this to was we were what will with you"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def cap_words(text: str) -> str:
    return " ".join(text.split()[:MAX_ANSWER_WORDS])


def keywords(text: str) -> list[str]:
    """Distinct non-stopwords of three or more letters, in order of first appearance."""
    seen: dict[str, str] = {}
    for word in WORD.findall(text):
        lower = word.lower()
        if len(word) > 2 and lower not in STOPWORDS and not word.isdigit():
            seen.setdefault(lower, word)
    return list(seen.values())


def digest(*parts: str, size: int = 8) -> int:
    data = "\x1f".join(parts).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=size).digest(), "big")
