"""The built-in models' translation and grammar fixes: small tables, applied word by word.

Translation knows a few phrases and words in each of ai_translate's languages (en, de, fr,
it, pt, hi, es, th), maps them through English, and keeps every word it does not know, so a
translated text is recognisable and deterministic, not good.
"""

from __future__ import annotations

import re

_LANGS = ("es", "fr", "de", "it", "pt", "hi", "th")
# English → es, fr, de, it, pt, hi, th. Phrases first: they win over their words.
_TABLE = {
    "how are you": ("cómo estás", "comment allez-vous", "wie geht es dir", "come stai", "como vai", "आप कैसे हैं", "คุณเป็นอย่างไร"),
    "thank you": ("gracias", "merci", "danke", "grazie", "obrigado", "धन्यवाद", "ขอบคุณ"),
    "good morning": ("buenos días", "bonjour", "guten Morgen", "buongiorno", "bom dia", "सुप्रभात", "สวัสดีตอนเช้า"),
    "life": ("vida", "vie", "Leben", "vita", "vida", "जीवन", "ชีวิต"),
    "hello": ("hola", "salut", "hallo", "ciao", "olá", "नमस्ते", "สวัสดี"),
    "yes": ("sí", "oui", "ja", "sì", "sim", "हाँ", "ใช่"),
    "good": ("bueno", "bon", "gut", "buono", "bom", "अच्छा", "ดี"),
    "is": ("es", "est", "ist", "è", "é", "है", "คือ"),
    "a": ("un", "un", "ein", "un", "um", "एक", "หนึ่ง"),
    "beautiful": ("hermoso", "beau", "schön", "bello", "bonito", "सुंदर", "สวย"),
    "journey": ("viaje", "voyage", "Reise", "viaggio", "viagem", "यात्रा", "การเดินทาง"),
    "world": ("mundo", "monde", "Welt", "mondo", "mundo", "दुनिया", "โลก"),
    "friend": ("amigo", "ami", "Freund", "amico", "amigo", "दोस्त", "เพื่อน"),
    "day": ("día", "jour", "Tag", "giorno", "dia", "दिन", "วัน"),
    "love": ("amor", "amour", "Liebe", "amore", "amor", "प्यार", "รัก"),
    "water": ("agua", "eau", "Wasser", "acqua", "água", "पानी", "น้ำ"),
    "house": ("casa", "maison", "Haus", "casa", "casa", "घर", "บ้าน"),
    "book": ("libro", "livre", "Buch", "libro", "livro", "किताब", "หนังสือ"),
    "and": ("y", "et", "und", "e", "e", "और", "และ"),
    "data": ("datos", "données", "Daten", "dati", "dados", "डेटा", "ข้อมูล"),
    "table": ("tabla", "table", "Tabelle", "tabella", "tabela", "तालिका", "ตาราง"),
    "today": ("hoy", "aujourd'hui", "heute", "oggi", "hoje", "आज", "วันนี้"),
    "cat": ("gato", "chat", "Katze", "gatto", "gato", "बिल्ली", "แมว"),
    "dog": ("perro", "chien", "Hund", "cane", "cão", "कुत्ता", "สุนัข"),
    "the": ("el", "le", "der", "il", "o", "", ""),
}  # fmt: skip
_TO = {lang: {en: row[i] for en, row in _TABLE.items()} for i, lang in enumerate(_LANGS)}
# Any language → English; Spanish "la vida" is "life", as a reader would say it.
_FROM = {row[i].lower(): en for en, row in _TABLE.items() for i in range(len(_LANGS)) if row[i]}
_FROM.update({"la vida": "life", "la": "the", "un": "a", "una": "a", "es": "is"})


def translate(text: str, to_lang: str) -> str:
    english = _replace(text, _FROM)
    if to_lang == "en":
        return _capitalise(english, text)
    return _capitalise(_replace(english, {k: v for k, v in _TO[to_lang].items()}), text)


def _replace(text: str, table: dict[str, str]) -> str:
    phrases = sorted(table, key=len, reverse=True)
    pattern = re.compile(r"(?<!\w)(" + "|".join(map(re.escape, phrases)) + r")(?!\w)", re.I)
    replaced = pattern.sub(lambda m: table[m.group(1).lower()], text)
    return re.sub(r"  +", " ", replaced).strip()


def _capitalise(text: str, source: str) -> str:
    if text and source[:1].isupper():
        return text[0].upper() + text[1:]
    return text


_THIRD_PERSON = {
    "have": "has", "go": "goes", "do": "does", "dont": "doesn't", "don't": "doesn't",
    "are": "is", "were": "was", "want": "wants", "like": "likes", "need": "needs",
    "know": "knows", "make": "makes", "take": "takes", "run": "runs", "work": "works",
    "come": "comes", "say": "says", "get": "gets", "see": "sees", "eat": "eats",
}  # fmt: skip
_BASE_AFTER_TO = {
    "did": "do", "went": "go", "goes": "go", "does": "do", "has": "have", "was": "be",
    "made": "make", "took": "take", "ran": "run", "came": "come", "saw": "see", "ate": "eat",
}  # fmt: skip
_CONTRACTIONS = {
    "dont": "don't", "doesnt": "doesn't", "cant": "can't", "wont": "won't", "isnt": "isn't",
    "didnt": "didn't", "im": "I'm", "ive": "I've", "i": "I",
}  # fmt: skip
_COUNTABLE = frozenset(
    ["mistake", "error", "book", "thing", "problem", "question", "idea", "friend", "day", "word"]
)
_TOKEN = re.compile(r"[\w']+|[^\w']+")


def fix_grammar(text: str) -> str:
    tokens = _TOKEN.findall(text)
    words = [i for i, t in enumerate(tokens) if t[0].isalnum() or t[0] == "'"]
    for n, i in enumerate(words):
        word, lower = tokens[i], tokens[i].lower()
        before = [tokens[j].lower() for j in words[max(0, n - 2) : n]]
        nxt = tokens[words[n + 1]].lower() if n + 1 < len(words) else ""
        if before and before[-1] == lower and lower.isalpha():
            tokens[i] = ""  # a repeated word
            continue
        if _third_person(before) and lower in _THIRD_PERSON:
            tokens[i] = _THIRD_PERSON[lower]
        elif before[-1:] == ["to"] and lower in _BASE_AFTER_TO:
            tokens[i] = _BASE_AFTER_TO[lower]
        elif (
            before[-1:] in (["every"], ["each"])
            and lower.endswith("s")
            and not lower.endswith("ss")
        ):
            tokens[i] = word[:-1]
        elif before[-1:] in (["some"], ["many"], ["several"]) and lower in _COUNTABLE:
            tokens[i] = word + "s"
        elif lower in _CONTRACTIONS:
            tokens[i] = _CONTRACTIONS[lower]
        elif lower in ("a", "an") and nxt:
            vowel = nxt[0] in "aeiou"
            tokens[i] = (
                (word[0] + "n" if vowel else word[0]) if lower != ("an" if vowel else "a") else word
            )
    fixed = re.sub(r" {2,}", " ", "".join(tokens)).strip()
    return re.sub(r"(^|[.!?]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), fixed)


def _third_person(before: list[str]) -> bool:
    if before[-1:] and before[-1] in ("he", "she", "it"):
        return True
    return (
        len(before) == 2
        and before[0] in ("this", "that")
        and before[1].isalpha()
        and before[1] not in ("i", "you", "we", "they")
    )
