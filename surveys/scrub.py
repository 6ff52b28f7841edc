"""Removes contact details from free-text comments before they are stored."""

import re

_PATTERNS = (
    ("[email]", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)),
    ("[link]", re.compile(r"\b(?:https?://|www\.)\S+|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|io|"
                          r"co|dev|app|me|info|biz|edu|gov|us|uk|de|fr)(?:/\S*)?\b", re.I)),
    ("[handle]", re.compile(r"(?<![\w@])@[A-Za-z0-9_][A-Za-z0-9_.-]{1,38}")),
    ("[phone]", re.compile(r"(?<!\w)\(?\+?\d[\d\s().-]{6,}\d(?!\w)")),
)
# Dates look like phone numbers to the pattern above, and they are what a
# report's comment most needs to keep.
_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[./-]\d{1,2}[./-](?:\d{4}|\d{2})")


def _phone(match: re.Match) -> str:
    text = match.group()
    if all(_DATE.fullmatch(part) for part in text.split()):
        return text
    return "[phone]"


def comment_scrub(text: str) -> str:
    text = text.strip()
    for replacement, pattern in _PATTERNS:
        text = pattern.sub(_phone if replacement == "[phone]" else replacement, text)
    return text
