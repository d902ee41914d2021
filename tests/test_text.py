"""The gate for outside text (`todo_api.text`): what `unstorable` refuses, and the OpenAPI
patterns that describe what a pattern can (no NUL), read alike by Python's and ECMAScript's
regexes."""

import json
import re
import shutil
import subprocess

import pytest

from tests.conftest import IN_CI
from todo_api.text import NOT_BLANK_PATTERN, STORABLE_TEXT_PATTERN, unstorable

STORABLE = [
    "plain",
    "",
    "emoji \U0001f600 and \U0010ffff",
    "e\u0301 combining",
    "\u202eright-to-left override\u202c",
    "\ufeff\u2028\x01\x7f\x85 controls",
    "שלום مرحبا",
    "\u0130stanbul",
]
UNSTORABLE = ["a\x00b", "\udfff", "\ud83d", "tail \ud800", "\ude00 head", "\x00"]


@pytest.mark.parametrize("text", STORABLE)
def test_storable_text_passes(text: str) -> None:
    assert unstorable(text) is None
    assert re.fullmatch(STORABLE_TEXT_PATTERN, text)


@pytest.mark.parametrize("text", UNSTORABLE)
def test_nul_and_lone_surrogates_do_not(text: str) -> None:
    assert unstorable(text) is not None
    if "\x00" in text:
        assert not re.fullmatch(STORABLE_TEXT_PATTERN, text)
        assert not re.fullmatch(NOT_BLANK_PATTERN, "x" + text)


def test_ecmascript_reads_the_patterns_as_python_does() -> None:
    """A JavaScript client validating against the document (Swagger UI, a form library) sees
    characters beyond U+FFFF as surrogate pairs, and its `\\s` is not Python's: the patterns
    spell their sets out, so both accept and refuse the same strings."""
    node = shutil.which("node")
    if node is None:
        if IN_CI:
            pytest.fail("node is required under CI=true")
        pytest.skip("node is not installed")
    samples = [*STORABLE, *UNSTORABLE, "   ", " x "]
    script = (
        "const {patterns, samples} = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "console.log(JSON.stringify(patterns.map(p => samples.map(s => new RegExp(p).test(s)))));"
    )
    result = subprocess.run(
        [node, "-e", script],
        input=json.dumps(
            {"patterns": [STORABLE_TEXT_PATTERN, NOT_BLANK_PATTERN], "samples": samples}
        ),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    in_javascript = json.loads(result.stdout)
    in_python = [
        [re.fullmatch(pattern, sample) is not None for sample in samples]
        for pattern in (STORABLE_TEXT_PATTERN, NOT_BLANK_PATTERN)
    ]
    assert in_javascript == in_python
