"""Removes contact details from free-text comments before they are stored."""

import re

_PATTERNS = (
    ("[email]", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)),
    ("[link]", re.compile(r"\b(?:https?://|www\.)\S+|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|io|"
                          r"co|dev|app|me|info|biz|edu|gov|us|uk|de|fr)(?:/\S*)?\b", re.I)),
    ("[handle]", re.compile(r"(?<![\w@])@[A-Za-z0-9_][A-Za-z0-9_.-]{1,38}")),
    ("[phone]", re.compile(r"(?<!\w)\+?\d[\d\s().-]{6,}\d(?!\w)")),
)


def comment_scrub(text: str) -> str:
    text = text.strip()
    for replacement, pattern in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
