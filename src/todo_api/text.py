"""Text from outside: the one check every string passes before it can reach the database, the
request models that apply it to every field, and what counts as white space in user text,
spelled out once for the validators and for the patterns the OpenAPI document shows, so that
both agree on every character.

JSON Schema patterns are ECMAScript regexes, whose `\\s` is not Python's (U+001C-U+001F and
U+0085 are white space only to Python, U+FEFF only to ECMAScript), so neither uses `\\s`: the
set below is Python's white space plus U+FEFF, and trimming strips exactly that set.
"""

import sys
from typing import Any

from pydantic import BaseModel, field_validator

WHITESPACE = (
    "".join(character for character in map(chr, range(sys.maxunicode + 1)) if character.isspace())
    + "\ufeff"
)


def _escaped(characters: str) -> str:
    """The characters as the inside of a regex character class, consecutive ones as ranges."""
    codes = sorted(map(ord, characters))
    ranges: list[list[int]] = []
    for code in codes:
        if ranges and code == ranges[-1][1] + 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(
        f"\\u{low:04x}" if low == high else f"\\u{low:04x}-\\u{high:04x}" for low, high in ranges
    )


# Inside a character class: white space, and NUL (refused everywhere).
_BLANK_OR_NUL = _escaped(WHITESPACE) + "\\u0000"


# The patterns say what a JSON Schema pattern can say for every generator and validator that
# reads the document: no NUL. Unpaired surrogates are refused too (`unstorable`), but a pattern
# naming surrogate ranges made Schemathesis send what the pattern excludes (blank titles,
# non-addresses) as if it were not there.
STORABLE_TEXT_PATTERN = "^[^\\u0000]*$"
NOT_BLANK_PATTERN = f"^[^\\u0000]*[^{_BLANK_OR_NUL}][^\\u0000]*$"
# A deliberately loose address (the real check would be a confirmation email): something,
# `@`, something with a dot; no white space, control characters or second `@` in the parts.
_ADDRESS_CHARACTER = f"[^@{_BLANK_OR_NUL}\\u0001-\\u001f\\u007f]"
EMAIL_CORE_PATTERN = f"{_ADDRESS_CHARACTER}+@{_ADDRESS_CHARACTER}+\\.{_ADDRESS_CHARACTER}+"
EMAIL_PATTERN = f"^[{_escaped(WHITESPACE)}]*{EMAIL_CORE_PATTERN}[{_escaped(WHITESPACE)}]*$"
# A tag: no control character (Unicode's Cc), comma or slash, and not blank.
CONTROL_CHARACTERS = "".join(map(chr, [*range(0x20), *range(0x7F, 0xA0)]))
_TAG_CHARACTER = f"[^{_escaped(CONTROL_CHARACTERS)},/]"
TAG_PATTERN = (
    f"^{_TAG_CHARACTER}*[^{_escaped(WHITESPACE)}{_escaped(CONTROL_CHARACTERS)},/]{_TAG_CHARACTER}*$"
)


def trim(text: str) -> str:
    return text.strip(WHITESPACE)


def unstorable(text: str) -> str | None:
    """Why `text` cannot be stored, or None if it can.

    JSON and token claims can carry what no database column holds: NUL (PostgreSQL's text types
    refuse it) and unpaired UTF-16 surrogates (`"\\udfff"`: not Unicode scalar values, so no
    UTF-8 encoding exists for them). Every other character, control characters included, is
    stored and answered back exactly.
    """
    if not text.isascii():  # ASCII cannot hold a surrogate: the common case skips encoding
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode text (it contains an unpaired surrogate)"
    return "must not contain NUL characters" if "\x00" in text else None


def _refuse_unstorable(value: Any) -> Any:
    """Checks every string in a raw input value (lists and objects included) with `unstorable`."""
    if isinstance(value, str):
        problem = unstorable(value)
        if problem is not None:
            raise ValueError(problem)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_unstorable(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_unstorable(key)
            _refuse_unstorable(item)
    return value


class InputModel(BaseModel):
    """Base of every model that takes text from a request (bodies and query strings): each
    field's raw value passes `unstorable` before any other validator sees it, so a refused
    string is a 400 naming its field, and no field can forget the check."""

    @field_validator("*", mode="before")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        return _refuse_unstorable(value)
