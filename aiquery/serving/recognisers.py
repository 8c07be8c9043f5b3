"""Kinds of information the built-in models find in text: what ai_extract takes out and
ai_mask hides. Each kind is a pattern, found by a label's words ("email", "phone_number",
"vendor_name": the first word that names a kind decides); deterministic and visible.

A capitalised phrase is a person, a location after "in", "at", "from" or "to", an
organisation when it ends in Corp, Inc, Ltd, LLC or Company (or follows "for" or "from").
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_CAPS = r"[A-Z][\w'&-]*(?:\s+(?:of\s+|and\s+|&\s+)?[A-Z][\w'&-]*)*"
_ORG_SUFFIX = r"(?:Corp\.?|Corporation|Inc\.?|Ltd\.?|LLC|Co\.|Company|GmbH|AG|S\.A\.)"
PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    "url": re.compile(r"https?://[^\s,;]+[^\s,;.]"),
    "phone": re.compile(
        r"(?<![\w-])(?:\+?\d{1,3}[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])?\d{3}[\s.-]\d{4}(?![\w-])"
    ),
    "address": re.compile(
        r"\d+\s+(?:[A-Z][a-z]+\s+)+(?:St|Street|Ave|Avenue|Rd|Road|Blvd|Lane|Ln|Dr|Drive|Way|Court|Ct)\b\.?"
    ),
    "card": re.compile(r"\b(?:\d{4}[ -]?){3}\d{4}\b"),
    "ssn": re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),
    "ip": re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"),
    "date": re.compile(
        r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b|\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug"
        r"|Sep|Oct|Nov|Dec)[a-z]*\.? \d{1,2}(?:, \d{4})?"
    ),
    "time": re.compile(r"\b\d{1,2}(?::\d{2})?\s?(?:am|pm|AM|PM)\b|\b\d{1,2}:\d{2}\b"),
    "money": re.compile(
        r"[$€£¥]\s?\d[\d,]*(?:\.\d+)?|\b\d[\d,]*(?:\.\d+)?\s?(?:USD|EUR|GBP|dollars|euros)\b"
    ),
    "organization": re.compile(
        rf"\b{_CAPS}\s+{_ORG_SUFFIX}|(?<=\bfor )(?:{_CAPS})|(?<=\bfrom )(?:{_CAPS})"
    ),
    "location": re.compile(rf"(?<=\b(?:in|at) )(?:{_CAPS})|(?<=\bfrom )(?:{_CAPS})"),
    "person": re.compile(r"\b[A-Z][a-z]+(?:\s+[A-Z]\.)?(?:\s+[A-Z][a-z]+(?:-[A-Z][a-z]+)?){1,2}\b"),
    "number": re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])"),
}
# Label words that name a kind.
KINDS = {
    "email": "email", "mail": "email", "e-mail": "email",
    "url": "url", "website": "url", "link": "url",
    "phone": "phone", "telephone": "phone", "mobile": "phone", "fax": "phone",
    "address": "address", "street": "address",
    "card": "card", "credit": "card",
    "ssn": "ssn", "social": "ssn",
    "ip": "ip",
    "date": "date", "birthday": "date", "dob": "date",
    "time": "time", "hour": "time",
    "amount": "money", "price": "money", "cost": "money", "total": "money", "money": "money",
    "salary": "money", "fee": "money",
    "organization": "organization", "organisation": "organization", "company": "organization",
    "vendor": "organization", "employer": "organization", "org": "organization",
    "location": "location", "city": "location", "country": "location", "place": "location",
    "person": "person", "name": "person", "people": "person", "customer": "person",
    "count": "number", "quantity": "number", "age": "number", "number": "number",
}  # fmt: skip
_WORDS = re.compile(r"[a-z]+")
# Capitalised words that start sentences, not names.
_NOT_NAMES = frozenset(
    ("a", "an", "the", "this", "that", "these", "my", "our", "your", "his", "her", "their",
     "call", "contact", "send", "email", "write", "ask", "meet", "visit", "dear", "hi",
     "hello", "thanks", "please", "tell", "invoice", "order")
)  # fmt: skip


def kind_of(label: str) -> str | None:
    """The kind a label names, from its first word that names one."""
    for word in _WORDS.findall(label.lower()):
        kind = KINDS.get(word) or KINDS.get(word.rstrip("s"))
        if kind is not None:
            return kind
    return None


def spans(kind: str, text: str) -> Iterator[tuple[int, int]]:
    """Where `kind` occurs in `text`, in order; a person is never a location or organisation."""
    pattern = PATTERNS[kind]
    if kind != "person":
        yield from (m.span() for m in pattern.finditer(text))
        return
    taken = [m.span() for k in ("organization", "location") for m in PATTERNS[k].finditer(text)]
    for m in pattern.finditer(text):
        start = m.start()
        words = m.group().split()
        while len(words) > 2 and words[0].lower() in _NOT_NAMES:  # "Call Jane Roe"
            start = text.index(words[1], start + len(words[0]))
            words = words[1:]
        if words[0].lower() in _NOT_NAMES:
            continue
        if not any(a < m.end() and start < b for a, b in taken):
            yield start, m.end()


def find(label: str, text: str) -> list[str]:
    """Every value of the label's kind in `text`; for a label that names no kind, the value
    that follows the label's own words ("Invoice #12345" for invoice_id)."""
    kind = kind_of(label)
    if kind is not None:
        return [text[a:b] for a, b in spans(kind, text)]
    for word in _WORDS.findall(label.lower()):
        if len(word) < 3:
            continue
        after = re.search(
            rf"\b{re.escape(word)}\w*\s*(?:is|:|#|no\.?|number)?\s*#?([\w][\w.-]*)", text, re.I
        )
        if after and after.group(1).lower() not in ("the", "a", "an", "of", "from", "for"):
            return [after.group(1).rstrip(".")]
    return []


def mask(labels: list[str], text: str, mark: str) -> str:
    """`text` with every value of the labels' kinds replaced by `mark`."""
    found: list[tuple[int, int]] = []
    for label in labels:
        kind = kind_of(label)
        if kind is not None:
            found.extend(spans(kind, text))
    out, at = [], 0
    for start, end in sorted(found):
        if start < at:
            continue  # overlaps one already masked
        out.append(text[at:start] + mark)
        at = end
    return "".join(out) + text[at:]
