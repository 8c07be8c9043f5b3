"""The built-in embedding model: signed feature hashing of words and their trigrams.

Lower-cased words weigh 1 and their UTF-8 trigrams 0.35, L2-normalised, so texts sharing
words are closer; crc32 keeps it stable across processes and fast.
"""

from __future__ import annotations

import math
import zlib
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from aiquery.protocols.common import ProtocolError
from aiquery.serving.wording import WORD

_TRIGRAM_WEIGHT = 0.35


def embed(text: str, dim: int) -> list[float]:
    """An L2-normalised feature-hashing vector of `dim` floats for `text`.

    Empty or whitespace-only text (or text without word characters) maps to the unit
    vector along index 0.
    """
    vector: list[float] = embed_array(text, dim).tolist()
    return vector


def embed_array(text: str, dim: int) -> npt.NDArray[np.float64]:
    """`embed` as a numpy array: what the server encodes, with no Python float per value."""
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
        raise ProtocolError("embedding dimensions must be a positive integer")
    features = [f for word in WORD.findall(text.lower()) for f in _word_features(word, dim)]
    if not features:
        return _unit(dim)
    indexes, weights = zip(*features, strict=True)
    vector = np.bincount(indexes, weights=weights, minlength=dim).astype(np.float64)
    norm = math.sqrt(float(np.dot(vector, vector)))
    if norm < 1e-9:
        return _unit(dim)
    return vector / norm


def _unit(dim: int) -> npt.NDArray[np.float64]:
    vector = np.zeros(dim)
    vector[0] = 1.0
    return vector


@lru_cache(maxsize=8192)
def _word_features(word: str, dim: int) -> tuple[tuple[int, float], ...]:
    """(index, signed weight) of a word and of its boundary-marked byte trigrams."""
    # crc32, not blake2b: a few hundred features per text must hash in microseconds.
    # Trigrams start from another crc value so "cat" the word and "cat" the trigram differ.
    data = word.encode("utf-8", "surrogatepass")
    padded = b"<" + data + b">"
    h = zlib.crc32(data)
    features = [(h % dim, 1.0 if h >> 31 else -1.0)]
    for i in range(len(padded) - 2):
        h = zlib.crc32(padded[i : i + 3], 1)
        features.append((h % dim, _TRIGRAM_WEIGHT if h >> 31 else -_TRIGRAM_WEIGHT))
    return tuple(features)
