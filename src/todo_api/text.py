"""What counts as white space in user text, spelled out once for the validators and for the
patterns the OpenAPI document shows, so that both agree on every character.

JSON Schema patterns are ECMAScript regexes, whose `\\s` is not Python's (U+001C-U+001F and
U+0085 are white space only to Python, U+FEFF only to ECMAScript), so neither uses `\\s`: the
set below is Python's white space plus U+FEFF, and trimming strips exactly that set.
"""

import sys

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
NO_NUL_PATTERN = "^[^\\u0000]*$"
NOT_BLANK_PATTERN = f"^[^\\u0000]*[^{_BLANK_OR_NUL}][^\\u0000]*$"
# A deliberately loose address (the real check would be a confirmation email): something,
# `@`, something with a dot; no white space, control characters or second `@` in the parts.
_ADDRESS_CHARACTER = f"[^@{_BLANK_OR_NUL}\\u0001-\\u001f\\u007f]"
EMAIL_CORE_PATTERN = f"{_ADDRESS_CHARACTER}+@{_ADDRESS_CHARACTER}+\\.{_ADDRESS_CHARACTER}+"
EMAIL_PATTERN = f"^[{_escaped(WHITESPACE)}]*{EMAIL_CORE_PATTERN}[{_escaped(WHITESPACE)}]*$"


def trim(text: str) -> str:
    return text.strip(WHITESPACE)
