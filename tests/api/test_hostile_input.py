"""Hostile text through every place outside text enters, on SQLite and on PostgreSQL.

Hypothesis draws strings made to break a text pipeline: lone surrogates (high and low, alone
and at the start, middle or end), NUL, C0 and C1 controls, U+FEFF, U+2028/2029, bidi controls,
characters whose lower case is longer (U+0130 "İ"), 4-byte characters, combining marks, RTL
text, lengths on either side of each limit and ~10 KB strings, mixed with ordinary text. They
go into every task body field (POST, PUT, PATCH, as JSON escapes and as raw UTF-8 bytes), every
listing parameter (percent-encoded, raw invalid bytes too), forged cursors, task ids in the
path, the headers the API reads, token claims and token headers, and signup and login; and into
what SPEC §10 added: `tags` (as items and as the whole value), `recurrence`, `time_zone`,
`remind_at`, the read-only `completed_at` and `next_occurrence_id`, the listing's `tag`, `due`,
`tz`, `due_from`, `due_to` and `remind_before`, tag names in `/api/tags/{name}` and in a
rename's body, and the `{user_id}` of `/api/{user_id}/tasks…`.

The properties, for every case:
- never an answer >= 500, never an ERROR record or a traceback in the log;
- what the server refuses gets a 400 naming the field (401 for a token) and changes nothing;
- what it accepts round-trips exactly: the answer, a fresh GET and the database row hold the
  same string (after the documented trimming of titles, names, emails and tags, and the
  canonical form of a recurrence rule); read-only fields are ignored;
- no request touches another user's data (a foreign `{user_id}` is a 403 that writes nothing);
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
import zoneinfo
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
from todo_api.tasks.recurrence import normalise_rule
from todo_api.text import trim

pytestmark = [
    pytest.mark.slow,
    pytest.mark.fuzz,  # make test-fuzz
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


def stored_instant(value: datetime | str | None) -> datetime | None:
    """A date-time column as read with plain SQL: aware on PostgreSQL, naive UTC text on SQLite."""
    if value is None or isinstance(value, str):
        return None if value is None else _instant(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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
    elif field in {"due_date", "remind_at"}:
        assert _instant(answer[field]) == _instant(sent) == stored_instant(row[field]), stored
    elif field == "recurrence":
        assert answer["recurrence"] == row["recurrence"] == normalise_rule(sent), stored
    elif field == "time_zone":
        assert answer["time_zone"] == row["time_zone"] == sent, stored
        assert sent in ZONES, stored
    else:
        raise AssertionError(f"{case}: a string was accepted for a boolean")


def must_accept(field: str, value: str) -> bool:
    """Legitimate text every rule agrees on: it has to be stored, whatever its characters."""
    if unstorable(value):
        return False
    if field == "title":
        return len(value) <= MAX_TITLE and trim(value) != ""
    if field == "recurrence":
        return value in VALID_RULES
    if field == "time_zone":
        return value in ZONES
    if field == "remind_at":
        return value in VALID_MOMENTS
    return field == "description" and len(value) <= MAX_DESCRIPTION


async def assert_read_back(
    probe: Probe, answer: dict[str, Any], case: str, user: str = "alice"
) -> None:
    """A fresh GET of the task answers what the write answered."""
    again = await probe.send("GET", f"/api/tasks/{answer['id']}", case, headers=auth(user))
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
        unchanged = set(before) - {field, "updated_at", "change_seq"}
        assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}, case
        await assert_read_back(probe, answer, case)
        return
    assert_rightly_refused(response, content, field, value, case)
    assert after == before, f"{case}: the task changed"


# --- §10 task fields: tags, recurrence, time zone, reminder, read-only fields ---------------

MAX_TAG, MAX_TAGS = 50, 20
CONTROL_SET = frozenset(CONTROLS)
ZONES = frozenset(zoneinfo.available_timezones())
# Tags that fold together ("ß" = "SS" = "ẞ", the three sigmas, "K" = KELVIN SIGN), blank ones,
# ones that trimming makes valid (U+001C and U+0085 are white space as well as control
# characters), and ones on either side of the length limit, before and after trimming.
TAG_SAMPLES = [
    "work",
    "Work",
    "WORK",
    " work ",
    "\twork\n",
    "\x1cwork\x85",
    "wo\x7frk",
    "wo\x85rk",
    "a,b",
    "a/b",
    "a\\b",
    "#work",
    "x" * MAX_TAG,
    "x" * (MAX_TAG + 1),
    " " + "x" * MAX_TAG,
    "😀" * MAX_TAG,
    "İ",
    "i\u0307",
    "ß",
    "SS",
    "ẞ",
    "Σ",
    "σ",  # noqa: RUF001 - the point is case folding
    "ς",
    "\u212a",
    "k",
    "\u200b",
    "\ufeff",
    "\u00a0",
    "",
]
MANY_TAGS = [*(f"t{n}" for n in range(22)), "T0", "T1", " t2 "]  # 22 tags, 25 spellings


def expected_tags(value: Any, known: dict[str, str] | None = None) -> list[str] | None:
    """The tags the API must answer for `value` (SPEC §10), or None if it must refuse it: a list
    of strings, each storable, at most 50 characters as sent, trimmed, not blank, without control
    characters, commas or slashes; at most 20 once spellings that differ only in case collapse
    (into the first one, or into the user's own spelling in `known`), sorted without regard
    to case."""
    if not isinstance(value, list):
        return None
    spelled: dict[str, str] = {}
    for item in value:
        if not isinstance(item, str) or unstorable(item) or len(item) > MAX_TAG:
            return None
        name = trim(item)
        if not name or CONTROL_SET.intersection(name) or "," in name or "/" in name:
            return None
        key = name.casefold()
        spelled.setdefault(key, (known or {}).get(key, name))
    if len(spelled) > MAX_TAGS:
        return None
    return [spelled[key] for key in sorted(spelled)]


def either(*strategies: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Each strategy as often as the others. (`st.one_of` flattens the alternatives of the
    alternatives: `hostile_text()`, made of six, would be drawn six times as often.)"""
    return st.sampled_from(strategies).flatmap(lambda strategy: strategy)


def tag_text() -> st.SearchStrategy[str]:
    """One tag as sent: hostile text, a plausible tag, or one with a hostile character in it."""
    return either(
        hostile_text(),
        st.sampled_from(TAG_SAMPLES),
        st.tuples(
            st.sampled_from(SINGLE_HOSTILE),
            st.sampled_from(TAG_SAMPLES),
            st.sampled_from(TAG_SAMPLES),
            st.sampled_from(["alone", "start", "middle", "end"]),
        ).map(_placed),
    )


def tag_values() -> st.SearchStrategy[Any]:
    """A `tags` value: lists of hostile tags (non-strings among them, or 19 to 25 spellings of
    about 20 tags), or something that is no list: a string, a number, null, an object."""
    return either(
        st.lists(tag_text(), max_size=4),
        st.lists(st.one_of(tag_text(), json_values()), min_size=1, max_size=3),
        st.lists(st.sampled_from(MANY_TAGS), min_size=19, max_size=len(MANY_TAGS), unique=True),
        hostile_text(),
        json_values(),
    )


def stored_tags(row: dict[str, Any]) -> list[str]:
    """A task row's own tag list: a JSON array on SQLite, a text array on PostgreSQL."""
    tags = row["tags"]
    return list(json.loads(tags) if isinstance(tags, str) else tags)


async def tag_rows(probe: Probe, user: str) -> dict[str, list[dict[str, Any]]]:
    """What the database holds of a user's tags: their spellings, which task carries which,
    and their tasks."""
    return {
        "tags": await probe.db.rows(
            "SELECT key, name FROM tags WHERE user_id = :u ORDER BY key", u=user
        ),
        "task_tags": await probe.db.rows(
            "SELECT task_id, key FROM task_tags WHERE user_id = :u ORDER BY task_id, key", u=user
        ),
        "tasks": await probe.db.rows("SELECT * FROM tasks WHERE user_id = :u ORDER BY id", u=user),
    }


async def check_accepted_tags(
    probe: Probe,
    user: str,
    case: str,
    expected: list[str] | None,
    answer: dict[str, Any],
    row: dict[str, Any],
) -> None:
    """Accepted tags are answered and stored as SPEC §10 defines them, and are the user's tags
    (the task is the user's only one)."""
    assert expected is not None, f"{case}: accepted"
    stored = stored_tags(row)
    assert answer["tags"] == stored == expected, (
        f"{case}: answered {show(answer['tags'])}, stored {show(stored)}, expected {show(expected)}"
    )
    held = await tag_rows(probe, user)
    spellings = {tag["key"]: tag["name"] for tag in held["tags"]}
    assert set(expected) <= set(spellings.values()), f"{case}: tags table {show(spellings)}"
    assert len(held["task_tags"]) == len(expected), f"{case}: task_tags {show(held['task_tags'])}"


@examples(60)
@given(value=tag_values(), utf8=st.booleans())
@example(value=["\udfff"], utf8=False)
@example(value=["\udfff"], utf8=True)
@example(value=["a\x00b"], utf8=False)
@example(value=[" Work ", "work", "WORK", "ß", "SS"], utf8=False)
@example(value="work", utf8=False)
@example(value=None, utf8=False)
@example(value=7, utf8=False)
@example(value=[["work"]], utf8=False)
@example(value={"work": 1}, utf8=False)
@example(value=[*MANY_TAGS[:20], "T0", "T1"], utf8=False)  # 22 spellings, 20 tags
async def test_create_task_tags(probe: Probe, value: Any, utf8: bool) -> None:
    probe.case()
    user = f"tagger-{uuid.uuid4().hex}"  # a user's tag keeps its first spelling
    case = f"POST /api/tasks tags={show(value)} utf8={utf8}"
    content = wire_json({"title": "Hostile probe", "tags": value}, utf8=utf8)
    value = json.loads(content)["tags"]
    expected = expected_tags(value)
    response = await probe.send(
        "POST", "/api/tasks", case, content=content, headers=user_headers(user)
    )
    if response.status_code == 201:
        answer = response.json()
        row = await probe.db.task(answer["id"])
        assert row is not None, case
        await check_accepted_tags(probe, user, case, expected, answer, row)
        await assert_read_back(probe, answer, case, user)
        return
    if not too_large(response, content, case):
        assert expected is None, f"{case}: refused {response.text}"
        assert_refused(response, "tags", case)
    held = await tag_rows(probe, user)
    assert held == {"tags": [], "task_tags": [], "tasks": []}, f"{case}: written {show(held)}"


@examples(40)
@given(value=tag_values(), utf8=st.booleans(), method=st.sampled_from(["PUT", "PATCH"]))
@example(value=["keep", "\udfff"], utf8=False, method="PATCH")
@example(value=["KEEP", "New"], utf8=True, method="PUT")
@example(value=[], utf8=False, method="PATCH")
@example(value=None, utf8=False, method="PATCH")
async def test_update_task_tags(probe: Probe, value: Any, utf8: bool, method: str) -> None:
    probe.case()
    user = f"tagger-{uuid.uuid4().hex}"
    case = f"{method} /api/tasks/{{id}} tags={show(value)} utf8={utf8}"
    task_id = await create(probe, user, case, title="Before", tags=[" Keep ", "other"])
    before = await tag_rows(probe, user)
    content = wire_json({"tags": value}, utf8=utf8)
    value = json.loads(content)["tags"]
    expected = expected_tags(value, known={"keep": "Keep", "other": "other"})
    response = await probe.send(
        method, f"/api/tasks/{task_id}", case, content=content, headers=user_headers(user)
    )
    after = await probe.db.task(task_id)
    assert after is not None
    if response.status_code == 200:
        answer = response.json()
        await check_accepted_tags(probe, user, case, expected, answer, after)
        unchanged = set(after) - {"tags", "updated_at", "change_seq"}
        was = before["tasks"][0]
        assert {k: after[k] for k in unchanged} == {k: was[k] for k in unchanged}, case
        await assert_read_back(probe, answer, case, user)
        return
    if not too_large(response, content, case):
        assert expected is None, f"{case}: refused {response.text}"
        assert_refused(response, "tags", case)
    assert await tag_rows(probe, user) == before, f"{case}: the task or its tags changed"


# Rules every reader of RFC 5545 agrees on, and rules just outside what SPEC §10 accepts.
VALID_RULES = [
    "FREQ=DAILY",
    "FREQ=WEEKLY;BYDAY=MO,WE",
    "RRULE:FREQ=MONTHLY;BYMONTHDAY=-1",
    "freq=yearly;bymonth=2;bymonthday=29",
    " FREQ=WEEKLY;INTERVAL=2 ",
    "FREQ=MONTHLY;BYDAY=-1FR;COUNT=3",
    "FREQ=DAILY;INTERVAL=366;UNTIL=99981231T235959Z",
    "FREQ=WEEKLY;UNTIL=20300101",
    "FREQ=YEARLY;BYDAY=20MO",
    "FREQ=DAILY;COUNT=1",
    "FREQ=DAILY;COUNT=1000",
    "FREQ=DAILY;INTERVAL=7;BYDAY=MO",
    "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO",
]
ODD_RULES = [
    "FREQ=DAILY;",
    ";FREQ=DAILY",
    "FREQ=DAILY;;COUNT=2",
    "FREQ=DAILY;COUNT=0",
    "FREQ=DAILY;COUNT=1001",
    "FREQ=DAILY;INTERVAL=0",
    "FREQ=DAILY;INTERVAL=367",
    "FREQ=DAILY;INTERVAL=" + "9" * 480,
    "FREQ=DAILY;INTERVAL=" + "9" * 4400,
    "FREQ=DAILY;COUNT=2;UNTIL=20300101",
    "FREQ=DAILY;UNTIL=99990101",
    "FREQ=DAILY;UNTIL=20260230",
    "FREQ=DAILY;UNTIL=20260101T250000",
    "FREQ=DAILY;UNTIL=00000101",
    "FREQ=HOURLY",
    "FREQ=DAILY;WKST=MO",
    "FREQ=DAILY;BYSETPOS=1",
    "FREQ=DAILY;FREQ=WEEKLY",
    "FREQ=WEEKLY;BYMONTHDAY=1",
    "FREQ=DAILY;BYDAY=1MO",
    "FREQ=MONTHLY;BYDAY=6MO",
    "FREQ=YEARLY;BYDAY=54MO",
    "FREQ=YEARLY;BYMONTH=2;BYDAY=6MO",
    "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
    "FREQ=YEARLY;BYMONTH=13",
    "FREQ=MONTHLY;BYMONTHDAY=0",
    "FREQ=MONTHLY;BYMONTHDAY=-0",
    "FREQ=DAİLY",
    "freq=daıly",  # noqa: RUF001 - a dotless i, which upper-cases to an ASCII I
    "ＦＲＥＱ=DAILY",  # noqa: RUF001 - full-width letters
    "RRULE:",
    "RRULE:RRULE:FREQ=DAILY",
    "DTSTART:20260101T000000Z\nRRULE:FREQ=DAILY",
    "FREQ=DAILY;BYDAY=" + ",".join(["MO"] * 200),
    "FREQ = DAILY",
    "FREQ=DAILY;BYDAY=MO,,TU",
]
RULE_PARTS = [
    "FREQ=DAILY",
    "FREQ=WEEKLY",
    "FREQ=MONTHLY",
    "FREQ=YEARLY",
    "INTERVAL=2",
    "INTERVAL=366",
    "COUNT=3",
    "UNTIL=20261231",
    "UNTIL=20261231T090000",
    "UNTIL=20261231T090000Z",
    "BYDAY=MO,-1FR",
    "BYDAY=2TU",
    "BYDAY=-53SU",
    "BYMONTHDAY=31,-31",
    "BYMONTHDAY=29",
    "BYMONTH=2",
    "BYMONTH=4,6",
]
ZONE_SAMPLES = [
    "UTC",
    "Europe/Berlin",
    "America/Argentina/Buenos_Aires",
    "America/New_York",
    "Etc/GMT+12",
    "Etc/GMT-14",
    "Pacific/Kiritimati",
]
ODD_ZONES = [
    "utc",
    "europe/berlin",
    "Europe/Berlin ",
    " UTC",
    "../../../../etc/passwd",
    "/etc/localtime",
    "/usr/share/zoneinfo/UTC",
    "Europe/../UTC",
    "Europe//Berlin",
    "Europe\\Berlin",
    "posix/Europe/Berlin",
    "right/UTC",
    "localtime",
    "Etc/GMT+13",
    "GMT+2",
    "+02:00",
    "Z",
    "zoneinfo",
    "__init__.py",
    "tzdata",
    "Europe",
    ".",
    "",
    "Europe/Berlin" * 5,
]
VALID_MOMENTS = [
    "2026-05-01",
    "2026-05-01T17:00:00",
    "2026-05-01T17:00:00Z",
    "2026-05-01T17:00:00+05:30",
    "2026-05-01T17:00:00.123456-08:00",
    "2026-03-08T02:30:00",  # skipped by daylight saving in New York
    "2026-11-01T01:30:00",  # repeated by it
]
ODD_MOMENTS = [
    "2026-05-01 17:00",
    "20260501T170000Z",
    "2026-W18-5",
    "0001-01-01",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00-14:00",
    "9998-12-31T23:59:59.999999",
    "9998-12-31T23:59:59-14:00",
    "9999-01-01",
    "2026-02-29",
    "2026-13-01",
    "2026-05-01T24:00:00",
    "2026-05-01T17:00:00+24:00",
    "2026-05-01T17:00:00+23:59:59.999999",
    "2026-05-01T17:00:60",
    "2026-05-01T17:00:00.1234567",
    "-2026-05-01",
    "+2026-05-01",
    "2026-05-01T17:00:00Z[Europe/Berlin]",
    "1714582800",
    "now",
    "today",
    "2026-05-01T17:00:00\u00a0",
    "２０２６-05-01",  # noqa: RUF001 - full-width digits
    "2026-05-01😀17:00:00",
    "2026-05-01T17:00:00" + "0" * 60,
]
WHERE = st.sampled_from(["alone", "start", "middle", "end"])


def _shaped(
    valid: list[str], odd: list[str], *more: st.SearchStrategy[str]
) -> st.SearchStrategy[str]:
    """Text of one field's own shape: valid, just outside the rules, or valid with a hostile
    character in it."""
    return either(
        st.sampled_from(valid),
        st.sampled_from(odd),
        st.tuples(
            st.sampled_from(SINGLE_HOSTILE), st.sampled_from(valid), st.sampled_from(valid), WHERE
        ).map(_placed),
        *more,
    )


def rule_text() -> st.SearchStrategy[str]:
    parts = st.lists(st.sampled_from(RULE_PARTS), min_size=1, max_size=5).map(";".join)
    return _shaped(VALID_RULES, ODD_RULES, parts)


def zone_text() -> st.SearchStrategy[str]:
    return _shaped(ZONE_SAMPLES, ODD_ZONES)


def moment_text() -> st.SearchStrategy[str]:
    return _shaped(VALID_MOMENTS, ODD_MOMENTS)


# The rest of a recurring task around the value under test: ordinary, or at the ends of the
# calendar, where completing it moves dates (and the reminder with them) furthest.
SETUP_DUE = "2026-06-01T09:00:00Z"
COMPANIONS = [
    {
        "due_date": SETUP_DUE,
        "recurrence": "FREQ=WEEKLY",
        "time_zone": "Europe/Berlin",
        "remind_at": "2026-06-01T08:00:00Z",
    },
    {
        "due_date": "0001-01-01T00:00:00Z",
        "recurrence": "FREQ=DAILY",
        "time_zone": "Etc/GMT+12",
        "remind_at": "0001-01-01T00:00:00Z",
    },
    {
        "due_date": SETUP_DUE,
        "recurrence": "FREQ=YEARLY;INTERVAL=2",
        "time_zone": "Pacific/Kiritimati",
        "remind_at": "9998-12-31T23:59:59Z",
    },
]
SHAPED_TEXT = {"recurrence": rule_text(), "time_zone": zone_text(), "remind_at": moment_text()}


def section10_values() -> st.SearchStrategy[tuple[str, Any]]:
    """One of the fields and a value for it: hostile text, text shaped like the field (half the
    time), or another JSON value."""
    return st.one_of(
        *(
            st.tuples(st.just(field), either(hostile_text(), shaped, shaped, json_values()))
            for field, shaped in SHAPED_TEXT.items()
        )
    )


def check_accepted_value(
    case: str, field: str, sent: Any, answer: dict[str, Any], row: dict[str, Any]
) -> None:
    """An accepted value of a nullable field: `null` clears it, a string is checked as text."""
    if sent is None:
        assert answer[field] is None, f"{case}: answered {show(answer[field])}"
        assert row[field] is None, f"{case}: stored {show(row[field])}"
        return
    assert isinstance(sent, str), f"{case}: a {type(sent).__name__} was accepted"
    check_accepted_field(case, field, sent, answer, row)


def assert_value_refused(
    response: Response, content: bytes, field: str, value: Any, case: str
) -> None:
    if isinstance(value, str):
        assert_rightly_refused(response, content, field, value, case)
    elif not too_large(response, content, case):
        assert value is not None, f"{case}: null refused {response.text}"
        assert_refused(response, field, case)


async def assert_completion_spawns(probe: Probe, answer: dict[str, Any], case: str) -> None:
    """Completing a recurring task with accepted values answers 200 and, if its rule goes on,
    spawns a pending successor due after it, its reminder moved by as much (SPEC §10)."""
    done = await probe.send(
        "PATCH",
        f"/api/tasks/{answer['id']}/complete",
        case,
        json={"completed": True},
        headers=auth("alice"),
    )
    assert done.status_code == 200, f"{case}: complete {done.status_code} {done.text}"
    successor = done.json()["next_occurrence_id"]
    if successor is None:
        return
    following = await probe.send("GET", f"/api/tasks/{successor}", case, headers=auth("alice"))
    assert following.status_code == 200, f"{case}: {following.status_code} {following.text}"
    task = following.json()
    assert not task["completed"], case
    assert _instant(task["due_date"]) > _instant(answer["due_date"]), f"{case}: {task}"
    assert task["recurrence"] == normalise_rule(task["recurrence"]), f"{case}: {task}"
    if answer["remind_at"] is None:
        return
    try:
        expected: datetime | None = _instant(answer["remind_at"]) + (
            _instant(task["due_date"]) - _instant(answer["due_date"])
        )
    except OverflowError:
        expected = None
    if expected is not None and expected.year >= 9999:
        # Moved past where due dates end: dropped (README, Decisions), never a 500.
        expected = None
    moved = _instant(task["remind_at"]) if task["remind_at"] else None
    assert moved == expected, f"{case}: successor {task}"


@examples(90)
@given(field_value=section10_values(), utf8=st.booleans(), companions=st.sampled_from(COMPANIONS))
@example(field_value=("recurrence", "\udfff"), utf8=True, companions=COMPANIONS[0])
@example(field_value=("time_zone", "Europe/Berlin\x00"), utf8=False, companions=COMPANIONS[0])
@example(field_value=("time_zone", "UTC"), utf8=False, companions=COMPANIONS[2])
@example(
    field_value=("remind_at", "9998-12-31T23:59:59.999999"), utf8=False, companions=COMPANIONS[0]
)
async def test_create_task_section10_field(
    probe: Probe, field_value: tuple[str, Any], utf8: bool, companions: dict[str, str]
) -> None:
    probe.case()
    field, value = field_value
    case = f"POST /api/tasks {field}={show(value)} utf8={utf8} with {companions}"
    body = {"title": "Hostile probe", **companions, field: value}
    before = await probe.db.count_tasks("alice")
    content = wire_json(body, utf8=utf8)
    value = json.loads(content)[field]
    response = await probe.send(
        "POST", "/api/tasks", case, content=content, headers=user_headers("alice")
    )
    if response.status_code == 201:
        answer = response.json()
        row = await probe.db.task(answer["id"])
        assert row is not None, case
        check_accepted_value(case, field, value, answer, row)
        await assert_read_back(probe, answer, case)
        if answer["recurrence"] is not None:
            await assert_completion_spawns(probe, answer, case)
        return
    assert_value_refused(response, content, field, value, case)
    assert await probe.db.count_tasks("alice") == before, f"{case}: a task was written"


@examples(75)
@given(
    field_value=section10_values(),
    utf8=st.booleans(),
    method=st.sampled_from(["PUT", "PATCH"]),
    companions=st.sampled_from(COMPANIONS),
)
@example(field_value=("recurrence", None), utf8=False, method="PATCH", companions=COMPANIONS[0])
@example(field_value=("remind_at", "a\x00b"), utf8=True, method="PUT", companions=COMPANIONS[0])
@example(field_value=("time_zone", "UTC"), utf8=False, method="PATCH", companions=COMPANIONS[2])
async def test_update_task_section10_field(
    probe: Probe,
    field_value: tuple[str, Any],
    utf8: bool,
    method: str,
    companions: dict[str, str],
) -> None:
    probe.case()
    field, value = field_value
    case = f"{method} /api/tasks/{{id}} {field}={show(value)} utf8={utf8} on {companions}"
    task_id = await create(probe, "alice", case, title="Before", **companions)
    before = await probe.db.task(task_id)
    assert before is not None
    content = wire_json({field: value}, utf8=utf8)
    value = json.loads(content)[field]
    response = await probe.send(
        method, f"/api/tasks/{task_id}", case, content=content, headers=user_headers("alice")
    )
    after = await probe.db.task(task_id)
    assert after is not None
    if response.status_code == 200:
        answer = response.json()
        check_accepted_value(case, field, value, answer, after)
        unchanged = set(before) - {field, "updated_at", "change_seq"}
        assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}, case
        await assert_read_back(probe, answer, case)
        if answer["recurrence"] is not None:
            await assert_completion_spawns(probe, answer, case)
        return
    assert_value_refused(response, content, field, value, case)
    assert after == before, f"{case}: the task changed"


READ_ONLY_FIELDS = ["completed_at", "next_occurrence_id"]


@pytest.mark.parametrize("field", READ_ONLY_FIELDS)
@examples(25)
@given(
    value=st.one_of(
        hostile_text(),
        json_values(),
        st.sampled_from(["2026-05-01T17:00:00Z", str(uuid.UUID(int=1)), "now"]),
    ),
    utf8=st.booleans(),
    completed=st.booleans(),
)
@example(value="\udfff", utf8=True, completed=True)
@example(value=str(uuid.UUID(int=1)), utf8=False, completed=False)
async def test_read_only_field(
    probe: Probe, field: str, value: Any, utf8: bool, completed: bool
) -> None:
    """`completed_at` and `next_occurrence_id` are the server's: whatever is sent for them, on
    create or on update, is ignored (2xx), and they hold what the server set."""
    probe.case()
    case = f"POST /api/tasks {field}={show(value)} completed={completed} utf8={utf8}"
    content = wire_json({"title": "Read-only", "completed": completed, field: value}, utf8=utf8)
    before = await probe.db.count_tasks("alice")
    started = datetime.now(UTC)
    response = await probe.send(
        "POST", "/api/tasks", case, content=content, headers=user_headers("alice")
    )
    if too_large(response, content, case):
        assert await probe.db.count_tasks("alice") == before, f"{case}: a task was written"
        return
    assert response.status_code == 201, f"{case}: {response.status_code} {response.text}"
    answer = response.json()
    row = await probe.db.task(answer["id"])
    assert row is not None, case
    assert answer["next_occurrence_id"] is None, f"{case}: {answer}"
    assert row["next_occurrence_id"] is None, f"{case}: stored {show(row)}"
    if completed:  # the server's clock, not the value sent
        set_at = _instant(answer["completed_at"])
        assert started.replace(microsecond=0) <= set_at <= datetime.now(UTC), f"{case}: {answer}"
        assert stored_instant(row["completed_at"]) == set_at, f"{case}: stored {show(row)}"
    else:
        assert answer["completed_at"] is None, f"{case}: {answer}"
        assert row["completed_at"] is None, f"{case}: stored {show(row)}"
    await assert_read_back(probe, answer, case)
    case = case.replace("POST /api/tasks", "PATCH /api/tasks/{id}")
    content = wire_json({field: value}, utf8=utf8)
    updated = await probe.send(
        "PATCH", f"/api/tasks/{answer['id']}", case, content=content, headers=user_headers("alice")
    )
    assert updated.status_code == 200, f"{case}: {updated.status_code} {updated.text}"
    after = await probe.db.task(answer["id"])
    assert after is not None
    kept = set(row) - {"updated_at", "change_seq"}
    assert {k: after[k] for k in kept} == {k: row[k] for k in kept}, f"{case}: stored {show(after)}"
    assert updated.json()[field] == answer[field], f"{case}: {updated.text}"


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


# --- §10 listing parameters ------------------------------------------------------------------

SECTION10_PARAMS = ["tag", "due", "tz", "due_from", "due_to", "remind_before"]
MOMENT_PARAMS = {"due_from", "due_to", "remind_before"}
DUE_CHOICES = {"overdue", "today", "none"}
ODD_DUE = ["OVERDUE", " today", "none ", "all", "pending", "null", "0", "overdue,today"]
# `tz` beside a date: the zones at the ends of the offsets, and one with daylight saving.
QUERY_ZONES = [None, "UTC", "Pacific/Kiritimati", "Etc/GMT+12", "America/New_York"]


def section10_query_values(param: str) -> st.SearchStrategy[str]:
    """Raw or percent-encoded hostile text, or text shaped like the parameter, percent-encoded."""
    shaped = {
        "tag": tag_text(),
        "due": _shaped(sorted(DUE_CHOICES), ODD_DUE),
        "tz": zone_text(),
    }.get(param, moment_text())
    encoded = shaped.map(percent).filter(lambda value: len(value) <= 40_000)
    return either(query_values(), encoded, encoded)


@pytest.mark.parametrize("param", SECTION10_PARAMS)
@examples(30)
@given(data=st.data(), via_params=st.booleans())
async def test_list_section10_parameter(
    probe: Probe, param: str, data: st.DataObject, via_params: bool
) -> None:
    probe.case()
    encoded = data.draw(section10_query_values(param), label=param)
    zone = data.draw(st.sampled_from(QUERY_ZONES), label="tz") if param in MOMENT_PARAMS else None
    user = f"lister-{uuid.uuid4().hex}"
    decoded = unquote(encoded)
    also = {} if zone is None else {"tz": zone}
    if via_params and not unstorable(decoded) and len(percent(decoded)) <= 40_000:
        request: dict[str, Any] = {"url": "/api/tasks", "params": {param: decoded, **also}}
    else:
        zone_part = "" if zone is None else f"&tz={percent(zone)}"
        request = {"url": f"/api/tasks?{param}={encoded}{zone_part}"}
    # For `tag`: a task carrying the tag, which the filter must find, and one it must leave out.
    tagged: set[str] | None = None
    if param == "tag" and expected_tags([decoded]) is not None:
        setup = f"tag setup for {show(decoded)}"
        tagged = {await create(probe, user, setup, title="tagged", tags=[decoded])}
        await create(probe, user, setup, title="untagged")
    case = f"GET /api/tasks {param}={encoded[:160]}" + (f" tz={zone}" if zone else "")
    response = await probe.send(
        "GET", request["url"], case, params=request.get("params"), headers=auth(user)
    )
    value = seen_value(response, param)
    case += f" (parsed {show(value)})"
    if value is None or (value == "" and param != "tag"):  # empty means absent
        assert response.status_code == 200, f"{case}: {response.status_code} {response.text}"
        return
    if "\x00" in value:
        assert_refused(response, param, case)
        return
    if param == "tag":
        if expected_tags([value]) is None:  # `tag=` included: no tag is blank
            assert_refused(response, "tag", case)
            return
        assert response.status_code == 200, f"{case}: {response.status_code} {response.text}"
        if value == decoded and tagged is not None:
            found = {task["id"] for task in response.json()}
            assert found == tagged, f"{case}: found {found}, tagged {tagged}"
    elif param == "due":
        if value in DUE_CHOICES:
            assert response.status_code == 200, f"{case}: {response.status_code}"
        else:
            assert_refused(response, "due", case)
    elif param == "tz":
        if value in ZONES:
            assert response.status_code == 200, f"{case}: {response.status_code}"
        else:
            assert_refused(response, "tz", case)
    elif response.status_code != 200:  # a date or date-time, read in `tz`
        assert value not in VALID_MOMENTS, f"{case}: refused {response.text}"
        assert_refused(response, param, case)


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


# --- tags in the path, and the new name of a tag ------------------------------------------------

BYSTANDER = "tag-bystander"
OWNER_TASKS = [["Work", "home"], ["work", "Other"]]  # spelled Work, home, Other
OWNER_SPELLINGS = {"work": "Work", "home": "home", "other": "Other"}
OWNER_TAGS = [[OWNER_SPELLINGS[name.casefold()] for name in names] for names in OWNER_TASKS]
PATH_TAGS = ["Work", "WORK", "work", " work ", "home", "HOME", "Other", "missing", "wörk", "ß"]
NEW_TAG_NAMES = ["renamed", " Renamed ", "HOME", "other", "work", "WORK"]
ODD_TAG_NAMES = ["a/b", "a,b", "", " ", "x" * (MAX_TAG + 1)]


def tag_segments() -> st.SearchStrategy[str]:
    """A path segment: raw or percent-encoded hostile text, or one of the owner's tags (in
    another case, or with a hostile character in it), percent-encoded."""
    shaped = _shaped(PATH_TAGS[:7], PATH_TAGS[7:]).map(percent)
    shaped = shaped.filter(lambda value: len(value) <= 40_000)
    return either(query_values(), shaped, shaped)


def tags_after(
    tasks: list[list[str]], method: str, old: str, new: str | None
) -> tuple[list[list[str]], list[dict[str, Any]]]:
    """The owner's tasks' tags after deleting tag `old`, or renaming it to `new` (merged into a
    tag of that name, all spelled `new`), and what `GET /api/tags` then answers."""
    spelled = [{name.casefold(): name for name in names} for names in tasks]
    for names in spelled:
        if method == "DELETE":
            names.pop(old.casefold(), None)
        elif new is not None and {old.casefold(), new.casefold()} & set(names):
            names.pop(old.casefold(), None)
            names[new.casefold()] = new
    counts = Counter(key for names in spelled for key in names)
    spelling = {key: name for names in spelled for key, name in names.items()}
    listing = [{"name": spelling[key], "count": counts[key]} for key in sorted(counts)]
    return [[names[key] for key in sorted(names)] for names in spelled], listing


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
@examples(30)
@given(
    segment=tag_segments(),
    new_name=either(st.sampled_from(NEW_TAG_NAMES), st.sampled_from(ODD_TAG_NAMES), tag_text()),
)
@example(segment="%00", new_name="renamed")
@example(segment="%ED%A0%80", new_name="renamed")
@example(segment="work", new_name="\udfff")
@example(segment="WORK", new_name=" Home ")
@example(segment="missing", new_name="WORK")
@example(segment=percent(" other "), new_name=" Renamed ")
async def test_tag_in_path(probe: Probe, method: str, segment: str, new_name: str) -> None:
    """`PATCH /api/tags/{name}` (with a hostile new name too) and `DELETE /api/tags/{name}`:
    a 400 naming `name`, a 404, or the change SPEC §10 describes on the caller's tasks, and
    never a change to another user's tags, though they have the same ones."""
    probe.case()
    owner = f"tag-owner-{uuid.uuid4().hex}"
    if await probe.db.count_tasks(BYSTANDER) == 0:
        await create(probe, BYSTANDER, "bystander setup", title="theirs", tags=["Work", "home"])
    task_ids = [
        await create(probe, owner, "tag setup", title="mine", tags=tags) for tags in OWNER_TASKS
    ]
    theirs, mine = await tag_rows(probe, BYSTANDER), await tag_rows(probe, owner)
    body: dict[str, Any] = {}
    sent_name = None
    if method == "PATCH":
        body["content"] = wire_json({"name": new_name}, utf8=False)
        sent_name = received(body["content"], "name")
    case = f"{method} /api/tags/{segment[:160]}" + (f" name={show(sent_name)}" if body else "")
    response = await probe.send(
        method, f"/api/tags/{segment}", case, headers=user_headers(owner), **body
    )
    # The tag as the app saw it: the test transport hands the app httpx's decoded path.
    path = response.request.url.path
    name = path.removeprefix("/api/tags/")
    case += f" (tag {show(name)})"
    assert await tag_rows(probe, BYSTANDER) == theirs, f"{case}: another user's tags changed"
    if not path.startswith("/api/tags/") or "/" in name or name == "":  # another route, or none
        assert response.status_code in {200, 307, 400, 404, 405}, f"{case}: {response.status_code}"
        assert await tag_rows(probe, owner) == mine, f"{case}: the caller's tags changed"
        return
    old = expected_tags([name], OWNER_SPELLINGS)
    new = None if sent_name is None else expected_tags([sent_name])
    if response.status_code == 400:
        assert old is None or (method == "PATCH" and new is None), f"{case}: {response.text}"
        assert_refused(response, "name", case)
        assert await tag_rows(probe, owner) == mine, f"{case}: the caller's tags changed"
        return
    assert old is not None, f"{case}: accepted"
    assert method == "DELETE" or new is not None, f"{case}: accepted"
    if old[0].casefold() not in OWNER_SPELLINGS:
        assert response.status_code == 404, f"{case}: {response.status_code} {response.text}"
        assert response.json()["detail"] == "Tag not found", f"{case}: {response.text}"
        assert await tag_rows(probe, owner) == mine, f"{case}: the caller's tags changed"
        return
    expected, listing = tags_after(OWNER_TAGS, method, old[0], None if new is None else new[0])
    if method == "DELETE":
        assert response.status_code == 204, f"{case}: {response.status_code} {response.text}"
    else:
        assert new is not None
        assert response.status_code == 200, f"{case}: {response.status_code} {response.text}"
        count = next(tag["count"] for tag in listing if tag["name"] == new[0])
        assert response.json() == {"name": new[0], "count": count}, f"{case}: {response.text}"
    for task_id, tags in zip(task_ids, expected, strict=True):
        again = await probe.send("GET", f"/api/tasks/{task_id}", case, headers=auth(owner))
        assert again.json()["tags"] == tags, f"{case}: {again.json()['tags']}, expected {tags}"
        row = await probe.db.task(task_id)
        assert row is not None
        assert stored_tags(row) == tags, f"{case}: stored {stored_tags(row)}, expected {tags}"
    listed = await probe.send("GET", "/api/tags", case, headers=auth(owner))
    assert listed.json() == listing, f"{case}: GET /api/tags {listed.text}, expected {listing}"


# --- user ids in the path ----------------------------------------------------------------------

USER_ROUTES = {
    "list": ("GET", ""),
    "create": ("POST", ""),
    "get": ("GET", "/{id}"),
    "update": ("PATCH", "/{id}"),
    "delete": ("DELETE", "/{id}"),
    "complete": ("PATCH", "/{id}/complete"),
}


@pytest.mark.parametrize("route", sorted(USER_ROUTES))
@examples(20)
@given(segment=query_values())
@example(segment="%00")
@example(segment="%ED%A0%80")
@example(segment=percent("\udfff"))
@example(segment=percent("alice\x00"))
@example(segment=percent("ALICE"))
async def test_user_id_in_path(probe: Probe, route: str, segment: str) -> None:
    """`/api/{user_id}/tasks…` with any `user_id` but the caller's: a 403, and nothing written
    (or a 404 or another route's answer where the segment makes the path another one)."""
    probe.case()
    method, suffix = USER_ROUTES[route]
    existing = await probe.send(
        "POST", "/api/tasks", "user path setup", json={"title": "Kept"}, headers=auth("alice")
    )
    task_id = existing.json()["id"]
    suffix = suffix.replace("{id}", task_id)
    before, count, users = (
        await probe.db.task(task_id),
        await probe.db.count_tasks(),
        await probe.user_count(),
    )
    body = {"json": {"title": "Changed"}} if route in {"create", "update"} else {}
    case = f"{route} /api/{segment[:160]}/tasks{suffix}"
    response = await probe.send(
        method, f"/api/{segment}/tasks{suffix}", case, headers=auth("alice"), **body
    )
    # The user id as the app saw it: the test transport hands the app httpx's decoded path.
    path = response.request.url.path
    matched = re.fullmatch(f"/api/(.*)/tasks{re.escape(suffix)}", path, re.DOTALL)
    if matched is None:  # dot segments took the path onto another route (`/api/./tasks`)
        return
    user_id = matched[1]
    case += f" (user id {show(user_id)})"
    if user_id == "alice":  # the caller's own path, by chance
        return
    assert await probe.db.task(task_id) == before, f"{case}: the task changed"
    assert await probe.db.count_tasks() == count, f"{case}: tasks were written"
    assert await probe.user_count() == users, f"{case}: a user row was written"
    if "/" in user_id or user_id in {"", "tasks", "tags"}:  # another route, or none
        assert response.status_code in {400, 403, 404, 405}, f"{case}: {response.status_code}"
        return
    assert response.status_code == 403, f"{case}: {response.status_code} {response.text}"


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
