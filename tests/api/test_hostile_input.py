"""Hostile text through every place outside text enters, on SQLite and on PostgreSQL.

Hypothesis draws strings made to break a text pipeline: lone surrogates (high and low, alone
and at the start, middle or end), NUL, C0 and C1 controls, U+FEFF, U+2028/2029, bidi controls,
characters whose lower case is longer (U+0130 "İ"), 4-byte characters, combining marks, RTL
text, lengths on either side of each limit and ~10 KB strings, mixed with ordinary text. They
go into every task body field (POST, PUT, PATCH, as JSON escapes and as raw UTF-8 bytes), every
listing parameter (percent-encoded, raw invalid bytes too), forged cursors, task ids in the
path, the headers the API reads, token claims and token headers, and signup and login.

The properties, for every case:
- never an answer >= 500, never an ERROR record or a traceback in the log;
- what the server refuses gets a 400 naming the field (401 for a token) and changes nothing;
- what it accepts round-trips exactly: the answer, a fresh GET and the database row hold the
  same string (after the documented trimming of titles, names and emails);
- lone surrogates and NUL are never accepted into stored text.

`pytest tests/api/test_hostile_input.py -s` prints how many hostile cases each database got.
`HOSTILE_EXAMPLES_FACTOR` (default 1) multiplies the examples of every test. Examples are
derandomized, so a run is repeatable.
"""

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import hypothesis
import pytest
from httpx import AsyncClient, Response
from hypothesis import HealthCheck, example, given
from hypothesis import strategies as st

from tests.conftest import SECRET, DatabaseProbe, auth, make_token
from todo_api.config import Settings
from todo_api.text import trim

pytestmark = [
    pytest.mark.slow,
    # A failing 10 KB example makes Hypothesis warn about the size of its report.
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
]
FACTOR = int(os.environ.get("HOSTILE_EXAMPLES_FACTOR", "1"))

# Cases sent and answers >= 500 seen, per database ("sqlite", "postgresql").
CASES: Counter[str] = Counter()
SERVER_ERRORS: Counter[str] = Counter()


def examples(count: int) -> hypothesis.settings:
    """Settings for one property: repeatable, no deadline (a database round trip varies)."""
    return hypothesis.settings(
        max_examples=count * FACTOR,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=[
            # The app, client and database probe live for the whole test; every example
            # works on its own user or task, and checks what it changed, so sharing is sound.
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
        ],
    )


# --- the hostile strings ----------------------------------------------------------------------

LONE_SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff", "\ud83d", "\ude00"]
CONTROLS = [chr(code) for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))]  # C0, DEL, C1
FORMAT_CHARACTERS = [
    "\ufeff",  # byte order mark / zero-width no-break space
    "\u2028",  # line separator
    "\u2029",  # paragraph separator
    "\u200b",  # zero-width space
    "\u200d",  # zero-width joiner
    "\u00ad",  # soft hyphen
    "\u061c",  # Arabic letter mark
    *map(chr, range(0x202A, 0x202F)),  # LRE, RLE, PDF, LRO, RLO
    *map(chr, range(0x2066, 0x206A)),  # LRI, RLI, FSI, PDI
]
CASE_ODDITIES = ["İ", "ẞ", "ß", "ﬃ", "ΐ", "Σ", "ς", "\u212a", "\u212b", "ǅ"]
ASTRAL = [
    "😀",
    "\U0001f600",
    "\U0010ffff",
    "\U000e0041",
    "𝕏",  # noqa: RUF001 - the point is a look-alike
    "👨\u200d👩\u200d👧\u200d👦",
    "🏳️\u200d🌈",
]
COMBINING = ["e\u0301", "\u0301", "\u0300\u0301\u0302\u0303" * 8, "Z̴̡̪a̷l̸g̶o̵"]
# Hebrew and Arabic (some of their letters look like Latin ones, which is fine here).
RIGHT_TO_LEFT = ["שלום", "مرحبا بالعالم", "\u202bעברית\u202c", "اختبار123", "\u202eevil.exe"]  # noqa: RUF001
ODD_TEXT = [
    "\ufffd",
    "\ufffe",
    "\uffff",
    "%00",
    "\\u0000",
    "\\",
    "/",
    "%",
    "_",
    "'",
    '"',
    "' OR '1'='1' --",
    "\r\n",
    " ",
    "\t",
    "",
]
SINGLE_HOSTILE = [
    *LONE_SURROGATES,
    *CONTROLS,
    *FORMAT_CHARACTERS,
    *CASE_ODDITIES,
    *(c for c in ASTRAL if len(c) == 1),
    "\u0301",
    "\ufffd",
    "\uffff",
]
NASTY_SAMPLES = [
    *SINGLE_HOSTILE,
    *ASTRAL,
    *COMBINING,
    *RIGHT_TO_LEFT,
    *ODD_TEXT,
    "\udfff\ud800",  # a pair in the wrong order
    "\ud83d\ude00",  # a well-formed pair, as Python holds it after json.loads of its escapes
    "a\x00b",
    "\x00" * 3,
    "İ" * 300,  # 300 characters, 600 once lower-cased
]
# Units repeated to the edges of the limits (100 names, 128 passwords, 200 titles,
# 255 subjects, 320 emails, 1000 descriptions) and to about 10 KB.
BIG_UNITS = ["x", "😀", "İ", "é", "e\u0301", "\u0301", "\u202e", " ", "\x01", "\udfff", "\x00"]
EDGE_LENGTHS = [99, 100, 101, 127, 128, 129, 199, 200, 201, 255, 256, 320, 321, 999, 1000, 1001]

HOSTILE_CHARACTERS: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(SINGLE_HOSTILE),
    st.integers(0xD800, 0xDFFF).map(chr),  # any lone surrogate
    st.characters(),  # any code point but a surrogate
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),
)
ORDINARY = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=12)


def _placed(parts: tuple[str, str, str, str]) -> str:
    nasty, before, after, where = parts
    return {
        "alone": nasty,
        "start": nasty + before,
        "middle": before + nasty + after,
        "end": before + nasty,
    }[where]


def _big(parts: tuple[str, str, float]) -> str:
    """About 10 KB of one unit, with one nasty sample somewhere in it."""
    unit, nasty, where = parts
    filler = unit * (10_000 // len(unit.encode("utf-8", "surrogatepass")))
    at = int(len(filler) * where)
    return filler[:at] + nasty + filler[at:]


def hostile_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(NASTY_SAMPLES),
        st.text(HOSTILE_CHARACTERS, max_size=30),
        st.tuples(
            st.sampled_from(SINGLE_HOSTILE),
            ORDINARY,
            ORDINARY,
            st.sampled_from(["alone", "start", "middle", "end"]),
        ).map(_placed),
        st.lists(
            st.one_of(st.sampled_from(NASTY_SAMPLES), ORDINARY, st.text(HOSTILE_CHARACTERS)),
            min_size=2,
            max_size=5,
        ).map("".join),
        st.builds(
            lambda unit, n: unit * n, st.sampled_from(BIG_UNITS), st.sampled_from(EDGE_LENGTHS)
        ),
        st.tuples(st.sampled_from(BIG_UNITS), st.sampled_from(NASTY_SAMPLES), st.floats(0, 1)).map(
            _big
        ),
    )


def json_values() -> st.SearchStrategy[Any]:
    """Any JSON value, with hostile strings and awkward numbers among the leaves."""
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from([0, -1, 2**63, 10**400, -(10**400)]),
        st.floats(allow_nan=False, allow_infinity=False),
        hostile_text(),
    )
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(st.text(HOSTILE_CHARACTERS, max_size=5), children, max_size=3),
        ),
        max_leaves=6,
    )


def unstorable(text: str) -> bool:
    """Text no database may receive: NUL, or a lone surrogate (no UTF-8 form)."""
    return any(char == "\x00" or 0xD800 <= ord(char) <= 0xDFFF for char in text)


def show(value: object) -> str:
    """An input as it can be read in a failure message."""
    shown = ascii(value)
    return shown if len(shown) <= 160 else f"{shown[:160]}… ({len(str(value))} characters)"


def wire_json(body: Any, *, utf8: bool) -> bytes:
    """JSON as a hostile client sends it: `\\udfff` escapes, or the raw UTF-8 bytes of each
    character (a lone surrogate then becomes the invalid bytes ED BF BF)."""
    if utf8:
        return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return json.dumps(body).encode()


def received(content: bytes, field: str) -> str:
    """A field as the server's JSON parser reads the body: an escaped high and low surrogate
    side by side join into one character (valid text), raw surrogate bytes stay lone."""
    value: str = json.loads(content)[field]
    return value


def as_json_reads(value: Any) -> Any:
    """A value after a trip through JSON escapes, as a token's claims or a cursor make it."""
    return json.loads(json.dumps(value))


def percent(text: str) -> str:
    """Percent-encoded bytes of `text`, lone surrogates included (as their invalid UTF-8)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


# --- the harness --------------------------------------------------------------------------


@pytest.fixture(name="settings")
def generous_settings(settings: Settings) -> Settings:
    """The test settings with a login throttle that hundreds of failed logins do not reach,
    so every hostile login gets to the code under test rather than a 429."""
    limits = [name for name in Settings.model_fields if name.startswith("login_max_failures")]
    return settings.model_copy(update=dict.fromkeys(limits, 10**6))


@pytest.fixture(scope="module", autouse=True)
def report_counts() -> Iterator[None]:
    yield
    for database in sorted(CASES):
        print(
            f"\nhostile input on {database}: {CASES[database]} cases, "
            f"{SERVER_ERRORS[database]} answers >= 500"
        )


@dataclass
class Probe:
    """Sends requests, and fails on any answer >= 500 or any error in the app's log."""

    client: AsyncClient
    db: DatabaseProbe
    caplog: pytest.LogCaptureFixture

    @property
    def database(self) -> str:
        return str(self.db.engine.dialect.name)

    def case(self) -> None:
        CASES[self.database] += 1

    async def send(self, method: str, url: str, case: str, **kwargs: Any) -> Response:
        seen = len(self.caplog.records)
        response = await self.client.request(method, url, **kwargs)
        where = f"{case} ({self.database}): {method} {show(str(response.request.url))}"
        if response.status_code >= 500:
            SERVER_ERRORS[self.database] += 1
        assert response.status_code < 500, f"{where} → {response.status_code} {response.text}"
        logged = [
            record
            for record in self.caplog.records[seen:]
            if record.exc_info or record.levelno >= logging.ERROR
        ]
        assert not logged, f"{where} logged {logged[0].levelname}: {logged[0].getMessage()}"
        return response

    async def user_count(self) -> int:
        return int((await self.db.rows("SELECT count(*) AS n FROM users"))[0]["n"])

    async def user_row(self, user_id: str) -> dict[str, Any] | None:
        rows = await self.db.rows("SELECT id, email, name FROM users WHERE id = :id", id=user_id)
        return rows[0] if rows else None


@pytest.fixture
def probe(client: AsyncClient, db: DatabaseProbe, caplog: pytest.LogCaptureFixture) -> Probe:
    return Probe(client, db, caplog)


def assert_refused(response: Response, field: str, case: str) -> None:
    """A 400 whose first error names `field`."""
    assert response.status_code == 400, f"{case}: {response.status_code} {response.text}"
    errors = response.json().get("errors") or []
    assert errors, f"{case}: 400 without errors[]: {response.text}"
    assert errors[0]["field"] == field, f"{case}: names {errors[0]['field']!r}: {response.text}"


MAX_BODY_BYTES = 65536  # the default MAX_BODY_BYTES, which the test settings keep


def too_large(response: Response, content: bytes, case: str) -> bool:
    """A 413 for a body over the limit (a ~10 KB string escaped as JSON can exceed it)."""
    if response.status_code != 413:
        return False
    assert len(content) > MAX_BODY_BYTES, f"{case}: 413 for {len(content)} bytes"
    return True


def assert_token_refused(response: Response, case: str) -> None:
    assert response.status_code == 401, f"{case}: {response.status_code} {response.text}"
    assert response.headers.get("www-authenticate", "").startswith("Bearer"), case


async def create(probe: Probe, user: str, case: str, **fields: Any) -> str:
    """A task created as set-up (valid input); its id."""
    response = await probe.send("POST", "/api/tasks", case, json=fields, headers=auth(user))
    assert response.status_code == 201, f"{case}: {response.status_code} {response.text}"
    task_id: str = response.json()["id"]
    return task_id


def user_headers(user: str) -> dict[str, str]:
    return {**auth(user), "Content-Type": "application/json"}


# --- task bodies -----------------------------------------------------------------------------

BODY_FIELDS = ["title", "description", "priority", "due_date", "completed"]
MAX_TITLE, MAX_DESCRIPTION = 200, 1000


def _instant(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def check_accepted_field(
    case: str, field: str, sent: str, answer: dict[str, Any], row: dict[str, Any]
) -> None:
    """An accepted value is answered and stored exactly (titles trimmed)."""
    assert not unstorable(sent), f"{case}: accepted"
    stored = f"{case}: answered {show(answer[field])}, stored {show(row[field])}"
    if field == "title":
        assert answer["title"] == row["title"] == trim(sent), stored
        assert 1 <= len(row["title"]) <= MAX_TITLE, stored
    elif field == "description":
        assert answer["description"] == row["description"] == sent, stored
        assert len(sent) <= MAX_DESCRIPTION, stored
    elif field == "priority":
        assert answer["priority"] == row["priority"] == sent, stored
        assert sent in {"low", "medium", "high"}, stored
    elif field == "due_date":
        assert _instant(answer["due_date"]) == _instant(sent) == row["due_date"], stored
    else:
        raise AssertionError(f"{case}: a string was accepted for a boolean")


def must_accept(field: str, value: str) -> bool:
    """Legitimate text every rule agrees on: it has to be stored, whatever its characters."""
    if unstorable(value):
        return False
    if field == "title":
        return len(value) <= MAX_TITLE and trim(value) != ""
    return field == "description" and len(value) <= MAX_DESCRIPTION


async def assert_read_back(probe: Probe, answer: dict[str, Any], case: str) -> None:
    """A fresh GET of the task answers what the write answered."""
    again = await probe.send("GET", f"/api/tasks/{answer['id']}", case, headers=auth("alice"))
    assert again.json() == answer, case


def assert_rightly_refused(
    response: Response, content: bytes, field: str, value: str, case: str
) -> None:
    """A refused body field: over the body limit, or a value the rules refuse, answered with a
    400 naming the field."""
    if not too_large(response, content, case):
        assert not must_accept(field, value), f"{case}: refused {response.text}"
        assert_refused(response, field, case)


@pytest.mark.parametrize("field", BODY_FIELDS)
@examples(70)
@given(value=hostile_text(), utf8=st.booleans())
@example(value="\udfff", utf8=False)
@example(value="\udfff", utf8=True)
@example(value="a\x00b", utf8=False)
@example(value="😀" * 200, utf8=True)
async def test_create_task_field(probe: Probe, field: str, value: str, utf8: bool) -> None:
    probe.case()
    case = f"POST /api/tasks {field}={show(value)} utf8={utf8}"
    body = {"title": "Hostile probe", field: value}
    before = await probe.db.count_tasks("alice")
    content = wire_json(body, utf8=utf8)
    value = received(content, field)
    response = await probe.send(
        "POST", "/api/tasks", case, content=content, headers=user_headers("alice")
    )
    if response.status_code == 201:
        answer = response.json()
        row = await probe.db.task(answer["id"])
        assert row is not None, case
        check_accepted_field(case, field, value, answer, row)
        await assert_read_back(probe, answer, case)
        return
    assert_rightly_refused(response, content, field, value, case)
    assert await probe.db.count_tasks("alice") == before, f"{case}: a task was written"


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
@pytest.mark.parametrize("field", BODY_FIELDS)
@examples(40)
@given(value=hostile_text(), utf8=st.booleans())
@example(value="\udfff", utf8=False)
@example(value="a\x00b", utf8=True)
async def test_update_task_field(
    probe: Probe, method: str, field: str, value: str, utf8: bool
) -> None:
    probe.case()
    case = f"{method} /api/tasks/{{id}} {field}={show(value)} utf8={utf8}"
    created = await probe.send(
        "POST",
        "/api/tasks",
        case,
        json={"title": "Before", "description": "before", "priority": "low"},
        headers=auth("alice"),
    )
    task_id = created.json()["id"]
    before = await probe.db.task(task_id)
    assert before is not None
    content = wire_json({field: value}, utf8=utf8)
    value = received(content, field)
    response = await probe.send(
        method, f"/api/tasks/{task_id}", case, content=content, headers=user_headers("alice")
    )
    after = await probe.db.task(task_id)
    assert after is not None
    if response.status_code == 200:
        answer = response.json()
        check_accepted_field(case, field, value, answer, after)
        unchanged = set(before) - {field, "updated_at"}
        assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}, case
        await assert_read_back(probe, answer, case)
        return
    assert_rightly_refused(response, content, field, value, case)
    assert after == before, f"{case}: the task changed"


RAW_BODY_PIECES = [
    b"\xff",
    b"\xfe\xff",
    b"\xc0\x80",  # overlong NUL
    b"\xed\xa0\x80",  # a UTF-8-encoded high surrogate
    b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\xe2\x82",  # truncated
    b"\x00",
    b"\\u0000",
    b"\\ud800",
    b"\\udfff\\ud800",
    b"\x1b",
    b"\xe2\x80\xae",
]


@examples(80)
@given(
    pieces=st.lists(
        st.one_of(st.sampled_from(RAW_BODY_PIECES), st.binary(max_size=8)), min_size=1, max_size=4
    ),
    wrapper=st.sampled_from(["title", "description", "bom", "utf-16"]),
)
async def test_create_task_raw_body_bytes(probe: Probe, pieces: list[bytes], wrapper: str) -> None:
    """Bytes no JSON encoder makes: invalid UTF-8, raw NUL, a BOM, UTF-16."""
    probe.case()
    text = b"".join(pieces)
    if wrapper == "title":
        content = b'{"title": "' + text + b'"}'
    elif wrapper == "description":
        content = b'{"title": "raw", "description": "' + text + b'"}'
    elif wrapper == "bom":
        content = b'\xef\xbb\xbf{"title": "' + text + b'"}'
    else:
        content = '{"title": "x'.encode("utf-16-le") + text + '"}'.encode("utf-16-le")
    case = f"POST /api/tasks raw body {show(content)}"
    before = await probe.db.count_tasks("alice")
    response = await probe.send(
        "POST", "/api/tasks", case, content=content, headers=user_headers("alice")
    )
    if response.status_code == 201:
        sent = json.loads(content)  # what the bytes say, decoded as Python's json does
        answer = response.json()
        row = await probe.db.task(answer["id"])
        assert row is not None
        for field in ("title", "description"):
            if field in sent:
                check_accepted_field(case, field, sent[field], answer, row)
        return
    assert response.status_code == 400, f"{case}: {response.status_code} {response.text}"
    assert await probe.db.count_tasks("alice") == before, f"{case}: a task was written"


# --- listing parameters ------------------------------------------------------------------------

QUERY_CHOICES = {
    "status": {"all", "pending", "completed"},
    "priority": {"low", "medium", "high"},
    "sort": {"created", "title", "due_date", "priority", "updated"},
    "order": {"asc", "desc"},
}
RAW_PERCENT = [
    "%00",
    "%ED%A0%80",  # high surrogate
    "%ED%BF%BF",  # low surrogate
    "%FF",
    "%C0%80",
    "%F4%90%80%80",
    "%E2%80%AE",
    "%EF%BB%BF",
    "%",
    "%G0",
    "%%",
    "+",
]


def query_values() -> st.SearchStrategy[str]:
    """A query-string value as sent: percent-encoded text, or raw (often invalid) escapes."""
    encoded = hostile_text().map(percent)
    raw = st.lists(
        st.one_of(st.sampled_from(RAW_PERCENT), ORDINARY.map(percent)), min_size=1, max_size=4
    ).map("".join)
    # httpx refuses URL parts over 64 KB; ~10 KB of text percent-encodes to at most ~30 KB.
    return st.one_of(encoded, raw).filter(lambda value: len(value) <= 40_000)


def seen_value(response: Response, name: str) -> str | None:
    """The value the app parsed for `name`, from the query string actually sent (Starlette
    decodes it as latin-1, then percent-decodes as UTF-8 with replacement characters)."""
    pairs = parse_qsl(response.request.url.query.decode("latin-1"), keep_blank_values=True)
    values = [value for key, value in pairs if key == name]
    return values[-1] if values else None


@pytest.mark.parametrize("param", ["q", "status", "priority", "sort", "order", "limit", "cursor"])
@examples(70)
@given(encoded=query_values(), via_params=st.booleans())
@example(encoded="a%00b", via_params=False)
@example(encoded="%ED%A0%80", via_params=False)
@example(encoded=percent("Émile İnce"), via_params=False)  # non-ASCII capitals, for q
async def test_list_query_parameter(
    probe: Probe, param: str, encoded: str, via_params: bool
) -> None:
    probe.case()
    user = f"lister-{uuid.uuid4().hex}"
    decoded = unquote(encoded)
    if via_params and not unstorable(decoded) and len(percent(decoded)) <= 40_000:
        # httpx's own encoding of the text (no lone surrogates: httpx cannot encode them).
        request: dict[str, Any] = {"url": "/api/tasks", "params": {param: decoded}}
    else:
        request = {"url": f"/api/tasks?{param}={encoded}"}
    # For `q`: tasks holding the searched text, which the search must find.
    expected_ids: dict[str, str] = {}
    if param == "q" and not unstorable(decoded) and 0 < len(decoded) <= MAX_TITLE:
        setup = f"q setup for {show(decoded)}"
        in_description = await create(probe, user, setup, title="q probe", description=decoded)
        expected_ids[in_description] = "in a description"
        if trim(decoded) == decoded:
            expected_ids[await create(probe, user, setup, title=decoded)] = "as a title"
    case = f"GET /api/tasks {param}={encoded[:160]}"
    response = await probe.send(
        "GET", request["url"], case, params=request.get("params"), headers=auth(user)
    )
    value = seen_value(response, param)
    case += f" (parsed {show(value)})"
    if value is None or value == "":
        assert response.status_code == 200, f"{case}: {response.status_code} {response.text}"
        return
    if "\x00" in value:
        assert_refused(response, param, case)
        return
    if param == "q":
        if len(value) > MAX_TITLE:
            assert_refused(response, "q", case)
            return
        assert response.status_code == 200, f"{case}: {response.status_code} {response.text}"
        if value == decoded:  # the tasks hold exactly the text searched for
            found = {task["id"] for task in response.json()}
            missed = [where for task_id, where in expected_ids.items() if task_id not in found]
            assert not missed, f"{case}: the search missed the task holding it {missed}"
    elif param in QUERY_CHOICES:
        if value in QUERY_CHOICES[param]:
            assert response.status_code == 200, f"{case}: {response.status_code}"
        else:
            assert_refused(response, param, case)
    elif param == "limit":
        if response.status_code != 200:
            assert_refused(response, "limit", case)
        if value.isascii() and value.isdigit():
            assert (response.status_code == 200) == (1 <= int(value) <= 1000), case
    else:  # cursor: text the server never issued
        assert_cursor_refused(response, case)


def assert_cursor_refused(response: Response, case: str) -> None:
    """A 400 that names the cursor: as a field, or in the sentence of a cursor that is no JSON."""
    assert response.status_code == 400, f"{case}: {response.status_code} {response.text}"
    body = response.json()
    if body.get("errors"):
        assert body["errors"][0]["field"] == "cursor", f"{case}: {response.text}"
    else:
        assert "cursor" in body["detail"].lower(), f"{case}: {response.text}"


def forged_cursor(position: Any) -> str:
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@examples(100)
@given(
    sort=st.sampled_from(sorted(QUERY_CHOICES["sort"])),
    order=st.sampled_from(["asc", "desc"]),
    key=st.one_of(hostile_text(), json_values()),
    task_id=st.one_of(st.uuids().map(str), hostile_text(), json_values()),
    raw=st.one_of(st.none(), st.binary(max_size=40)),
)
@example(sort="title", order="asc", key="\udfff", task_id=str(uuid.UUID(int=1)), raw=None)
@example(sort="title", order="asc", key="a\x00", task_id=str(uuid.UUID(int=1)), raw=None)
async def test_list_forged_cursor(
    probe: Probe, sort: str, order: str, key: Any, task_id: Any, raw: bytes | None
) -> None:
    """A cursor is client input too: its JSON may hold any value, or bytes that are no JSON."""
    probe.case()
    if raw is None:
        cursor = forged_cursor({"sort": sort, "order": order, "key": key, "id": task_id})
    else:
        cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    hypothesis.assume(len(cursor) <= 40_000)  # httpx refuses longer URL parts
    key, task_id = as_json_reads(key), as_json_reads(task_id)
    case = f"GET /api/tasks sort={sort} order={order} forged cursor key={show(key)} raw={raw!r}"
    response = await probe.send(
        "GET",
        "/api/tasks",
        case,
        params={"sort": sort, "order": order, "cursor": cursor},
        headers=auth("alice"),
    )
    if response.status_code == 200:
        assert isinstance(response.json(), list)
        forged_text = raw is None and isinstance(key, str) and unstorable(key)
        assert not forged_text, f"{case}: accepted"
        return
    assert_cursor_refused(response, case)
    title_key_is_fine = (
        raw is None
        and sort == "title"
        and isinstance(key, str)
        and not unstorable(key)
        and len(key) <= 400
        and isinstance(task_id, str)
        and _is_uuid(task_id)
    )
    assert not title_key_is_fine, f"{case}: a well-formed title cursor was refused"


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


# --- task ids in the path -------------------------------------------------------------------

ROUTES = {
    "GET": ("GET", ""),
    "PUT": ("PUT", ""),
    "PATCH": ("PATCH", ""),
    "DELETE": ("DELETE", ""),
    "complete": ("PATCH", "/complete"),
}


@pytest.mark.parametrize("route", sorted(ROUTES))
@examples(50)
@given(segment=query_values())
@example(segment="%00")
@example(segment="%ED%A0%80")
@example(segment=percent("\udfff"))
async def test_task_id_in_path(probe: Probe, route: str, segment: str) -> None:
    probe.case()
    method, suffix = ROUTES[route]
    existing = await probe.send(
        "POST", "/api/tasks", "path setup", json={"title": "Kept"}, headers=auth("alice")
    )
    before = await probe.db.task(existing.json()["id"])
    count = await probe.db.count_tasks()
    body = {"json": {"title": "Changed"}} if method in {"PUT", "PATCH"} and not suffix else {}
    case = f"{route} /api/tasks/{segment[:160]}{suffix}"
    response = await probe.send(
        method, f"/api/tasks/{segment}{suffix}", case, headers=auth("alice"), **body
    )
    # The id as the app saw it: the test transport hands the app httpx's decoded path.
    path = response.request.url.path
    task_id = path.removeprefix("/api/tasks/")
    task_id = task_id.removesuffix(suffix) if suffix else task_id
    case += f" (id {show(task_id)})"
    assert await probe.db.task(existing.json()["id"]) == before, f"{case}: the task changed"
    assert await probe.db.count_tasks() == count, f"{case}: tasks were written"
    ambiguous = (
        "/" in task_id or task_id in {"", ".", "..", "stats"} or not path.startswith("/api/tasks/")
    )
    if ambiguous:  # another route (307: `/api/tasks/` redirects to `/api/tasks`), or none
        assert response.status_code in {200, 307, 400, 404, 405}, f"{case}: {response.status_code}"
        return
    if response.status_code == 404:  # an id that parsed as a UUID, naming no task
        assert response.json()["detail"] == "Task not found", f"{case}: {response.text}"
        return
    assert_refused(response, "task_id", case)


# --- headers ---------------------------------------------------------------------------------

LATIN1 = st.characters(min_codepoint=0, max_codepoint=0xFF, exclude_characters="\r\n")
HEADER_SAMPLES = [
    "\x00",
    '"\x00"',
    'W/"\x00"',
    "*",
    "*\x00",
    " * ",
    "\xff",
    '"',
    '""',
    'W/""',
    ",",
    ",,",
    '"zz"',
    '"-1"',
    '"1_0"',
    '"7fffffffffffffffffff"',
    '"ffffffffffffffffffffffffffffffff"',
    "\x7f",
    "\x85",
    "\xa0",
    "\t",
    '"\xe9"',
    "null",
    "\x1b[31m",
]


def header_values() -> st.SearchStrategy[str]:
    """Header text: latin-1 only, as HTTP carries it, but no CR or LF (they end a header)."""
    return st.one_of(
        st.text(LATIN1, max_size=40),
        st.sampled_from(HEADER_SAMPLES),
        st.lists(
            st.one_of(st.sampled_from(HEADER_SAMPLES), st.text(LATIN1, max_size=10)),
            min_size=2,
            max_size=5,
        ).map("".join),
        st.builds(
            lambda unit, n: unit * n,
            st.sampled_from(["\x00", "\xff", "a", '"', ",", "W/", " "]),
            st.integers(1000, 8000),
        ),
    )


def header_names_it(response: Response, header: str) -> bool:
    """A 400 that names the header (`If-Match`, `if-match` or `if_match`), in `errors` or in
    its sentence: a header the server will not read is refused, not guessed at."""
    if response.status_code != 400:
        return False
    body = response.json()
    errors = body.get("errors") or []
    if errors:
        return bool(errors[0]["field"].lower().replace("_", "-") == header)
    return header in body["detail"].lower()


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
@examples(50)
@given(value=header_values(), with_etag=st.booleans())
@example(value="\x00", with_etag=False)
async def test_if_match_header(probe: Probe, method: str, value: str, with_etag: bool) -> None:
    probe.case()
    created = await probe.send(
        "POST", "/api/tasks", "If-Match setup", json={"title": "Before"}, headers=auth("alice")
    )
    task_id, etag = created.json()["id"], created.headers["etag"]
    header = f"{value}, {etag}" if with_etag else value
    before = await probe.db.task(task_id)
    case = f"{method} If-Match: {show(header)}"
    response = await probe.send(
        method,
        f"/api/tasks/{task_id}",
        case,
        json={"title": "After"},
        headers={**auth("alice"), "If-Match": header.encode("latin-1")},
    )
    after = await probe.db.task(task_id)
    if header_names_it(response, "if-match"):
        assert after == before, case
        return
    if with_etag or header.strip() == "*":
        assert response.status_code == 200, f"{case}: {response.status_code} {response.text}"
        assert after is not None
        assert after["title"] == "After", case
    else:  # a tag this API never issued cannot match
        assert response.status_code == 412, f"{case}: {response.status_code} {response.text}"
        assert after == before, f"{case}: the task changed"


@examples(50)
@given(value=header_values(), with_etag=st.booleans())
async def test_if_none_match_header(probe: Probe, value: str, with_etag: bool) -> None:
    probe.case()
    created = await probe.send(
        "POST", "/api/tasks", "If-None-Match setup", json={"title": "t"}, headers=auth("alice")
    )
    task_id, etag = created.json()["id"], created.headers["etag"]
    header = f"{value}, {etag}" if with_etag else value
    case = f"GET If-None-Match: {show(header)}"
    response = await probe.send(
        "GET",
        f"/api/tasks/{task_id}",
        case,
        headers={**auth("alice"), "If-None-Match": header.encode("latin-1")},
    )
    if header_names_it(response, "if-none-match"):
        return
    if with_etag or header.strip() == "*":
        assert response.status_code == 304, f"{case}: {response.status_code} {response.text}"
    else:
        assert response.status_code == 200, f"{case}: {response.status_code} {response.text}"
        assert response.json() == created.json(), case


SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@examples(50)
@given(value=st.one_of(header_values(), st.from_regex(SANE_REQUEST_ID, fullmatch=True)))
async def test_request_id_header(probe: Probe, value: str) -> None:
    probe.case()
    case = f"X-Request-ID: {show(value)}"
    response = await probe.send(
        "GET",
        "/api/tasks",
        case,
        headers={**auth("alice"), "X-Request-ID": value.encode("latin-1")},
    )
    assert response.status_code == 200, f"{case}: {response.status_code} {response.text}"
    answered = response.headers["x-request-id"]
    assert SANE_REQUEST_ID.fullmatch(answered), f"{case}: answered {show(answered)}"
    assert (answered == value) == bool(SANE_REQUEST_ID.fullmatch(value)), case


@examples(100)
@given(
    value=header_values(),
    shape=st.sampled_from(["whole", "bearer", "token then garbage", "garbage then token"]),
)
@example(value="\x00", shape="bearer")
async def test_authorization_header(probe: Probe, value: str, shape: str) -> None:
    probe.case()
    token = make_token("alice")
    header = {
        "whole": value,
        "bearer": f"Bearer {value}",
        "token then garbage": f"Bearer {token}{value}",
        "garbage then token": f"{value} {token}",
    }[shape]
    case = f"Authorization ({shape}): {show(header)}"
    response = await probe.send(
        "GET", "/api/tasks", case, headers={"Authorization": header.encode("latin-1")}
    )
    if response.status_code == 200:
        assert token in header, f"{case}: garbage was let in"
    else:
        assert_token_refused(response, case)


# --- tokens ----------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def hand_signed(header: Any, payload: Any) -> str:
    """A token signed with the test secret (HS256), whatever its header and payload hold."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def valid_payload() -> dict[str, Any]:
    now = int(time.time())
    return {"sub": f"token-{uuid.uuid4().hex}", "iat": now, "exp": now + 600}


@examples(80)
@given(sub=hostile_text())
@example(sub="\udfff")
@example(sub="a\x00b")
@example(sub="😀" * 255)
async def test_token_subject(probe: Probe, sub: str) -> None:
    probe.case()
    token = make_token(sub)
    case = f"token sub={show(sub)}"
    sub = as_json_reads(sub)
    users = await probe.user_count()
    headers = {"Authorization": f"Bearer {token}"}
    response = await probe.send("GET", "/api/tasks", case, headers=headers)
    if response.status_code != 200:
        assert_token_refused(response, case)
        assert await probe.user_count() == users, f"{case}: a user row was written"
        return
    assert not unstorable(sub), f"{case}: accepted"
    assert 1 <= len(sub) <= 255, f"{case}: accepted"
    row = await probe.user_row(sub)
    assert row is not None, f"{case}: no user row"
    assert row["id"] == sub, f"{case}: stored {show(row)}"
    created = await probe.send("POST", "/api/tasks", case, json={"title": "mine"}, headers=headers)
    assert created.status_code == 201, case
    assert created.json()["user_id"] == sub, case
    stored = await probe.db.task(created.json()["id"])
    assert stored is not None
    assert stored["user_id"] == sub, case


def email_forms(text: str) -> set[str | None]:
    """What a token's email may be stored as: dropped, or trimmed and lower-cased."""
    return {None, trim(text).lower(), text.strip().lower()}


@pytest.mark.parametrize("claim", ["email", "name"])
@examples(80)
@given(value=hostile_text())
@example(value="a\x00@example.com")
@example(value="\udfff@example.com")
@example(value="a" * 321 + "@example.com")
@example(value="İ" * 300 + "@example.com")
@example(value="Ann \U0001f600 Lee")
async def test_token_decorative_claim(probe: Probe, claim: str, value: str) -> None:
    """`email` and `name` only decorate the user row: bad text there is dropped, the request
    goes through, on every request of that user."""
    probe.case()
    sub = f"claims-{uuid.uuid4().hex}"
    claims: dict[str, Any] = {claim: value}
    token = make_token(sub, **claims)
    case = f"token {claim}={show(value)}"
    value = as_json_reads(value)
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(2):
        response = await probe.send("GET", "/api/tasks", case, headers=headers)
        if len(token) > 8192:
            assert_token_refused(response, case)
            return
        assert response.status_code == 200, f"{case}: {response.status_code} {response.text}"
    row = await probe.user_row(sub)
    assert row is not None, case
    stored = row[claim]
    if claim == "email":
        assert stored in email_forms(value), f"{case}: stored {show(stored)}"
        assert stored is None or len(stored) <= 320, f"{case}: stored {len(stored)} characters"
    else:
        assert stored in {None, value, trim(value)}, f"{case}: stored {show(stored)}"
    if unstorable(value):
        assert stored is None, f"{case}: stored {show(stored)}"
    me = await probe.send("GET", "/api/auth/me", case, headers=headers)
    assert me.json() == {"id": sub, "email": row["email"], "name": row["name"]}, case


HEADER_ODDITIES: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([None, [], ["HS256"], 256, -1, 1.5, True, {"alg": "HS256"}, ["exp"], [1]]),
    hostile_text(),
    json_values(),
)


def token_headers() -> st.SearchStrategy[Any]:
    alg = st.one_of(
        st.just("HS256"),
        st.sampled_from(["none", "None", "NONE", "hs256", "HS256 ", "RS256", "EdDSA", "HS512", ""]),
        HEADER_ODDITIES,
    )
    as_object = st.fixed_dictionaries(
        {"alg": alg},
        optional={
            "typ": HEADER_ODDITIES,
            "kid": HEADER_ODDITIES,
            "crit": HEADER_ODDITIES,
            "jku": HEADER_ODDITIES,
            "x5u": HEADER_ODDITIES,
            "jwk": HEADER_ODDITIES,
            "b64": HEADER_ODDITIES,
        },
    )
    # Not an object at all, or an object without `alg`.
    return st.one_of(as_object, json_values(), st.dictionaries(st.text(max_size=4), json_values()))


@examples(140)
@given(
    header=token_headers(),
    claim=st.sampled_from([None, "sub", "exp", "iat", "nbf", "iss", "aud"]),
    claim_value=json_values(),
)
@example(header={"alg": ["HS256"]}, claim=None, claim_value=None)
@example(header={"alg": {"x": 1}}, claim=None, claim_value=None)
@example(header={"alg": "HS256", "kid": ["a"]}, claim=None, claim_value=None)
@example(header={"alg": "HS256"}, claim="exp", claim_value=10**400)
async def test_token_header_and_claim_types(
    probe: Probe, header: Any, claim: str | None, claim_value: Any
) -> None:
    """Signed with the right secret, but with odd JSON types where strings or numbers go."""
    probe.case()
    payload = valid_payload()
    if claim is not None:
        payload[claim] = claim_value
    token = hand_signed(header, payload)
    case = f"token header={show(header)} {claim}={show(claim_value)}"
    users = await probe.user_count()
    response = await probe.send(
        "GET", "/api/tasks", case, headers={"Authorization": f"Bearer {token}"}
    )
    if response.status_code == 200:
        assert isinstance(header, dict), f"{case}: accepted"
        assert header.get("alg") == "HS256", f"{case}: accepted"
        return
    assert_token_refused(response, case)
    assert await probe.user_count() == users, f"{case}: a user row was written"


# --- signup and login ----------------------------------------------------------------------

PASSWORD = "correct horse battery"


def hostile_values() -> st.SearchStrategy[str]:
    """Hostile text, alone or inside an otherwise plausible email address (a drawn tag keeps
    addresses apart; when two meet anyway, signup's 409 is checked against the database)."""
    text = hostile_text()
    tag = st.text("0123456789abcdef", min_size=8, max_size=8)
    return st.one_of(
        text,
        st.builds("{}{}@example.com".format, text, tag),
        st.builds("u{1}@{0}.example".format, text, tag),
        st.builds("{0}u{1}@example.com{0}".format, text, tag),
    )


@pytest.mark.parametrize("field", ["name", "email", "password"])
@examples(25)
@given(value=hostile_values(), utf8=st.booleans())
@example(value="\udfff", utf8=False)
@example(value="\udfff@example.com", utf8=True)
@example(value="a\x00b@example.com", utf8=False)
@example(value="İ" * 300 + "@example.com", utf8=False)
@example(value="😀 Ann\u202e \ufeff", utf8=True)
async def test_signup_field(probe: Probe, field: str, value: str, utf8: bool) -> None:
    probe.case()
    body = {
        "name": "Hostile Probe",
        "email": f"probe-{uuid.uuid4().hex}@example.com",
        "password": PASSWORD,
        field: value,
    }
    case = f"POST /api/auth/signup {field}={show(value)} utf8={utf8}"
    users = await probe.user_count()
    content = wire_json(body, utf8=utf8)
    body = json.loads(content)
    value = body[field]
    response = await probe.send(
        "POST",
        "/api/auth/signup",
        case,
        content=content,
        headers={"Content-Type": "application/json"},
    )
    if response.status_code == 201:
        assert not unstorable(value), f"{case}: accepted"
        user = response.json()["user"]
        assert user["email"] == trim(body["email"]).lower(), f"{case}: {show(user['email'])}"
        assert user["name"] == trim(body["name"]), f"{case}: {show(user['name'])}"
        assert len(user["email"]) <= 320, case
        assert len(user["name"]) <= 100, case
        row = await probe.user_row(user["id"])
        assert row == user, f"{case}: stored {show(row)}"
        token = response.json()["token"]
        me = await probe.send(
            "GET", "/api/auth/me", case, headers={"Authorization": f"Bearer {token}"}
        )
        assert me.json() == user, case
        login = await probe.send(
            "POST",
            "/api/auth/login",
            case,
            content=wire_json({"email": body["email"], "password": body["password"]}, utf8=utf8),
            headers={"Content-Type": "application/json"},
        )
        assert login.status_code == 200, f"{case}: login {login.status_code} {login.text}"
        assert login.json()["user"] == user, case
        return
    if response.status_code == 409:
        assert field == "email", f"{case}: {response.text}"
        assert not unstorable(value), f"{case}: {response.text}"
        taken = await probe.db.rows(
            "SELECT id FROM users WHERE lower(email) = :email", email=trim(value).lower()
        )
        assert taken, f"{case}: 409 for an email nobody has"
        return
    legitimate = not unstorable(value) and (
        (field == "name" and len(value) <= 100 and trim(value) != "")
        or (field == "password" and 8 <= len(value) <= 128)
    )
    if not too_large(response, content, case):
        assert not legitimate, f"{case}: refused {response.text}"
        assert_refused(response, field, case)
    assert await probe.user_count() == users, f"{case}: a user row was written"


@pytest.mark.parametrize("field", ["email", "password"])
@examples(25)
@given(value=hostile_values(), utf8=st.booleans())
@example(value="\udfff", utf8=False)
@example(value="\udfff@example.com", utf8=True)
@example(value="a\x00b@example.com", utf8=False)
async def test_login_field(probe: Probe, field: str, value: str, utf8: bool) -> None:
    probe.case()
    body = {"email": "nobody@example.com", "password": PASSWORD, field: value}
    case = f"POST /api/auth/login {field}={show(value)} utf8={utf8}"
    users = await probe.user_count()
    content = wire_json(body, utf8=utf8)
    value = received(content, field)
    response = await probe.send(
        "POST",
        "/api/auth/login",
        case,
        content=content,
        headers={"Content-Type": "application/json"},
    )
    assert await probe.user_count() == users, f"{case}: a user row was written"
    if too_large(response, content, case):
        return
    # Wrong credentials (401), or a 400 naming the field; text no database holds is a 400.
    if unstorable(value) or response.status_code != 401:
        assert_refused(response, field, case)
