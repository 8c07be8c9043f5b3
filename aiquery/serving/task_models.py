"""The built-in models' answers to Databricks' task AI functions, in each task's answer shape.

Deterministic stand-ins that are visibly derived from the text, so tests can assert them:
- sentiment: words from two short lists (a negation within two words before flips one);
  both kinds: mixed; neither: neutral; no words at all: null;
- classification: the labels sharing most word stems with the text (label names and
  descriptions), ties to the earlier label; with no shared word, the label whose words are
  closest in the embedding model's space; multilabel: every label sharing a word;
- extraction and masking: `recognisers`' patterns per kind of information;
- summaries: the first sentences, cut at `max_words` words (0: the first three sentences);
- translation: a small phrase and word dictionary per language (unknown words kept);
- grammar: a few rules (agreement after he/she/it and "this <noun>", "to" + base verb,
  "every" + singular, contractions, a/an, repeated words).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from aiquery.protocols.tasks import MASK, Task, typed
from aiquery.serving import recognisers
from aiquery.serving.embedding import embed
from aiquery.serving.language import fix_grammar, translate
from aiquery.serving.wording import SENTENCE_END, STOPWORDS, WORD

_POSITIVE = frozenset(
    [
        "good",
        "great",
        "love",
        "loved",
        "excellent",
        "happy",
        "amazing",
        "wonderful",
        "best",
        "like",
        "liked",
        "enjoy",
        "enjoyed",
        "fantastic",
        "pleased",
        "recommend",
        "perfect",
        "nice",
        "awesome",
        "glad",
        "delighted",
        "satisfied",
        "fast",
        "helpful",
    ]
)
_NEGATIVE = frozenset(
    [
        "bad",
        "terrible",
        "hate",
        "hated",
        "awful",
        "poor",
        "worst",
        "disappointed",
        "disappointing",
        "broken",
        "slow",
        "angry",
        "sad",
        "horrible",
        "refund",
        "useless",
        "fail",
        "failed",
        "failure",
        "problem",
        "late",
        "rude",
        "unhappy",
        "wrong",
        "leaked",
    ]
)
_NEGATIONS = frozenset({"not", "no", "never", "don't", "didn't", "isn't", "wasn't", "nothing"})


def answer_task(task: Task, content: str) -> dict[str, Any]:
    """The answer JSON a model would give for `task` on the user's `content`."""
    f = task.function
    if f == "ai_analyze_sentiment":
        return {"sentiment": sentiment(content)}
    if f == "ai_classify":
        return {"labels": classify(task, content)}
    if f == "ai_extract":
        return extract(task, content)
    if f == "ai_mask":
        return {"text": recognisers.mask(list(task.option("labels")), content, MASK)}
    if f == "ai_summarize":
        return {"text": summarize(content, int(task.option("max_words") or 0))}
    if f == "ai_translate":
        return {"text": translate(content, str(task.option("to_lang")))}
    assert f == "ai_fix_grammar", f
    return {"text": fix_grammar(content)}


def sentiment(text: str) -> str | None:
    words = [w.lower() for w in re.findall(r"[\w']+", text)]
    if not words:
        return None
    positive = negative = 0
    for i, word in enumerate(words):
        flipped = any(w in _NEGATIONS for w in words[max(0, i - 2) : i])
        if word in _POSITIVE:
            negative, positive = (negative + 1, positive) if flipped else (negative, positive + 1)
        elif word in _NEGATIVE:
            negative, positive = (negative, positive + 1) if flipped else (negative + 1, positive)
    if positive and negative:
        return "mixed"
    return "positive" if positive else "negative" if negative else "neutral"


def _stem(word: str) -> str:
    word = word.lower()
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _stems(text: str) -> set[str]:
    return {_stem(w) for w in WORD.findall(text.replace("_", " ")) if w.lower() not in STOPWORDS}


def classify(task: Task, text: str) -> list[dict[str, Any]]:
    labels: Sequence[str] = task.option("labels")
    descriptions: Mapping[str, str] = task.option("descriptions") or {}
    words = _stems(text)
    if not WORD.search(text):
        return []
    scored = []
    for i, label in enumerate(labels):
        shared = words & _stems(f"{label} {descriptions.get(label, '')}")
        scored.append((len(shared), -i, label, sorted(shared)))
    chosen = [s for s in sorted(scored, reverse=True) if s[0] > 0]
    if not task.option("multilabel"):
        chosen = chosen[:1]
    if not chosen:  # no shared word: the closest label in the embedding space
        vector = embed(text, 256)

        def closeness(label: str) -> float:
            other = embed(f"{label} {descriptions.get(label, '')}", 256)
            return math.fsum(a * b for a, b in zip(vector, other, strict=True))

        best = max(labels, key=closeness)
        return [_label(task, best, max(0.05, min(0.5, closeness(best))), "closest in wording")]
    return [_label(task, label, n / (n + 1), "shares " + ", ".join(w)) for n, _, label, w in chosen]


def _label(task: Task, label: str, confidence: float, why: str) -> dict[str, Any]:
    item: dict[str, Any] = {"value": label}
    if task.option("confidence"):
        item["confidence_score"] = round(confidence, 3)
    if task.option("rationales"):
        item["rationale"] = f"The text {why} with the label {label!r}."
    return item


def extract(task: Task, text: str) -> dict[str, Any]:
    if task.option("version") == "1":
        return {label: _first(recognisers.find(label, text)) for label in task.option("labels")}
    schema: Mapping[str, Any] = task.option("schema")
    values = {name: _field(name, spec, text) for name, spec in schema.items()}
    if task.option("confidence"):
        return {
            n: {"value": v, "confidence": 0.9 if v is not None else 0.1} for n, v in values.items()
        }
    return values


def _first(found: list[str]) -> str | None:
    return found[0] if found else None


def _field(name: str, spec: Mapping[str, Any], text: str) -> Any:
    """A field's value; a nested field's label starts with its parents' names ("vendor name")."""
    kind = spec["type"]
    label = f"{name} {spec.get('description', '')}"
    if kind == "object":
        return {n: _field(f"{name} {n}", s, text) for n, s in spec["properties"].items()}
    if kind == "array":
        items = spec["items"]
        if items["type"] == "object":
            one = _field(name, items, text)
            return [one] if any(v is not None for v in one.values()) else []
        return [
            v
            for v in (typed(_scalar(x, items), items) for x in recognisers.find(label, text))
            if v is not None
        ]
    if kind == "enum":
        lower = text.lower()
        return next(
            (x for x in spec["labels"] if re.search(rf"\b{re.escape(x.lower())}\b", lower)), None
        )
    if kind == "boolean":
        return bool(_stems(name) & _stems(text)) or None
    return typed(_scalar(_first(recognisers.find(label, text)), spec), spec)


def _scalar(found: str | None, spec: Mapping[str, Any]) -> Any:
    if found is None or spec["type"] not in ("integer", "number"):
        return found
    digits = re.search(r"-?\d[\d,]*(?:\.\d+)?", found)
    if digits is None:
        return None
    number = float(digits.group().replace(",", ""))
    return int(number) if spec["type"] == "integer" and number.is_integer() else number


def summarize(text: str, max_words: int) -> str:
    sentences = SENTENCE_END.split(" ".join(text.split()))
    if not max_words:
        return " ".join(sentences[:3])
    words: list[str] = []
    for sentence in sentences:
        words.extend(sentence.split())
        if len(words) >= max_words:
            break
    return " ".join(words[:max_words])
