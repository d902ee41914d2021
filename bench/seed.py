"""Realistic rows for the benchmark, generated from a seed and loaded with COPY.

Tasks carry what the API would have stored for them: `completed_at` on the completed ones (their
last change, as migration 0002 estimates it), no recurrence, time zone or reminder, and on one
task in every TAG_EVERY of each user the tag TAG_NAME, in `tasks.tags` and in the tag tables
(`tags`, `task_tags`), so that a tag filter has 1 % of a user's tasks to find.
"""

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg


def _words(text: str) -> tuple[str, ...]:
    return tuple(word.strip() for word in text.split(",") if word.strip())


VERBS = _words(
    """
    write, review, call, email, fix, plan, book, buy, clean, update, prepare, send, check,
    organise, finish, draft, schedule, cancel, renew, pay, order, pick up, return, read,
    test, deploy, refactor, file, sort, archive, print, sign, submit, share, measure,
    paint, repair, water, walk
"""
)
THINGS = _words(
    """
    quarterly report, dentist, invoice, team meeting, flight to Lisbon, groceries, garage,
    tax return, birthday present, budget, slides, car insurance, passport, library books,
    pull request, release notes, backlog, onboarding doc, newsletter, kitchen shelf,
    plants, dog, gym membership, electricity bill, design review, client proposal,
    conference talk, expense claim, lease, warranty, bike, database migration,
    on-call handover, school form, photo album, roadmap
"""
)
CONTEXT = _words(
    """
    before Friday, for Anna, with Tom, this week, tomorrow morning, again, after lunch,
    for the team, at home, in the office
"""
)
WORDS = _words(
    """
    the, numbers, from, finance, first, ask, about, deadline, remember, to, include,
    latest, figures, and, check, with, legal, before, sending, it, needs, two, copies,
    keep, receipt, call, back, if, no, answer, by, noon, use, new, template, attach,
    photos, agreed, last, meeting, bring, charger, confirm, address, price, went, up,
    compare, options, notes
"""
)
# Share of titles with a context phrase ("before Friday").
CONTEXT_SHARE = 0.4
PRIORITIES = ("low", "medium", "high", None)
HISTORY = timedelta(days=180)
TASK_COLUMNS = (
    "id", "user_id", "title", "description", "completed", "priority", "due_date",
    "created_at", "updated_at", "completed_at", "tags",
)  # fmt: skip
USER_COLUMNS = ("id", "email", "name", "password_hash", "created_at", "updated_at")
TAG_COLUMNS = ("user_id", "key", "name")
TASK_TAG_COLUMNS = ("task_id", "user_id", "key", "created_at")
# The one seeded tag, on every TAG_EVERY-th task a user has (the first included): 1 %. Which
# tasks those are is random all the same, for their creation times are.
TAG_NAME = "Errands"
TAG_KEY = TAG_NAME.casefold()  # as the API keys a tag (tag_key)
TAG_EVERY = 100
COPY_BATCH = 20_000


@dataclass(frozen=True, slots=True)
class SeededUser:
    id: str
    task_count: int


class TaskFactory:
    """Users and tasks, deterministic for a given seed."""

    def __init__(self, seed: int, now: datetime | None = None) -> None:
        # Not security-sensitive: reproducible fake data.
        self._rng = random.Random(seed)  # noqa: S311
        self._now = now or datetime.now(UTC)

    def user_id(self) -> str:
        # Better Auth ids are 32 random alphanumerics.
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        return "".join(self._rng.choice(alphabet) for _ in range(32))

    def title(self) -> str:
        rng = self._rng
        title = f"{rng.choice(VERBS).capitalize()} {rng.choice(THINGS)}"
        return f"{title} {rng.choice(CONTEXT)}" if rng.random() < CONTEXT_SHARE else title

    def description(self) -> str | None:
        if self._rng.random() < 0.4:
            return None
        words = self._rng.choices(WORDS, k=self._rng.randint(4, 30))
        return " ".join(words).capitalize() + "."

    def due_date(self) -> datetime | None:
        if self._rng.random() < 0.3:
            return None
        return self._now + timedelta(days=self._rng.uniform(-30, 120))

    def task(self, user_id: str, tags: list[str]) -> tuple[Any, ...]:
        """A row in TASK_COLUMNS' order. `tags` take no random draw, so the rest of the data do
        not depend on which tasks carry one."""
        rng = self._rng
        created = self._now - HISTORY * rng.random()
        updated = created + (self._now - created) * rng.random() ** 3
        task_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        title, description = self.title(), self.description()
        completed = rng.random() < 0.5
        return (
            task_id,
            user_id,
            title,
            description,
            completed,
            rng.choice(PRIORITIES),
            self.due_date(),
            created,
            updated,
            updated if completed else None,  # completed_at: when it last changed
            tags,
        )

    def create_body(self) -> dict[str, Any]:
        """A JSON body for `POST /api/tasks`, as a client would send it."""
        body: dict[str, Any] = {"title": self.title()}
        description = self.description()
        if description is not None:
            body["description"] = description
        priority = self._rng.choice(PRIORITIES)
        if priority is not None:
            body["priority"] = priority
        due = self.due_date()
        if due is not None:
            body["due_date"] = due.date().isoformat()
        return body

    def sample(self, items: list[str], k: int) -> list[str]:
        return self._rng.sample(items, min(k, len(items)))

    def shuffle(self, items: list[Any]) -> None:
        self._rng.shuffle(items)

    def choices(self, items: list[str], weights: list[float], k: int) -> list[str]:
        return self._rng.choices(items, weights=weights, k=k)


async def seed_users(
    connection: asyncpg.Connection, factory: TaskFactory, task_counts: list[int]
) -> list[SeededUser]:
    """Insert one user per entry of `task_counts`, then that many tasks each, and the seeded
    tag (users first, then their tags, tasks, and which task carries which, for the foreign
    keys). Returns the users in the order of `task_counts`."""
    now = datetime.now(UTC)
    users = [SeededUser(factory.user_id(), count) for count in task_counts]
    await connection.copy_records_to_table(
        "users",
        columns=USER_COLUMNS,
        records=[
            (user.id, f"bench{index}@example.com", f"Bench User {index}", None, now, now)
            for index, user in enumerate(users)
        ],
    )
    await connection.copy_records_to_table(
        "tags",
        columns=TAG_COLUMNS,
        records=[(user.id, TAG_KEY, TAG_NAME) for user in users if user.task_count],
    )
    batch: list[tuple[Any, ...]] = []
    task_tags: list[tuple[Any, ...]] = []
    for record in _tasks(factory, users):
        batch.append(record)
        task = dict(zip(TASK_COLUMNS, record, strict=True))
        task_tags.extend(
            (task["id"], task["user_id"], tag.casefold(), task["created_at"])
            for tag in task["tags"]
        )
        if len(batch) >= COPY_BATCH:
            await connection.copy_records_to_table("tasks", columns=TASK_COLUMNS, records=batch)
            batch = []
    if batch:
        await connection.copy_records_to_table("tasks", columns=TASK_COLUMNS, records=batch)
    await connection.copy_records_to_table("task_tags", columns=TASK_TAG_COLUMNS, records=task_tags)
    return users


def _tasks(factory: TaskFactory, users: list[SeededUser]) -> Iterator[tuple[Any, ...]]:
    for user in users:
        for index in range(user.task_count):
            tags = [TAG_NAME] if index % TAG_EVERY == 0 else []
            yield factory.task(user.id, tags)


async def task_ids_by_user(
    connection: asyncpg.Connection, user_ids: list[str]
) -> dict[str, list[str]]:
    rows = await connection.fetch(
        "SELECT user_id, id::text AS id FROM tasks WHERE user_id = ANY($1::varchar[])", user_ids
    )
    ids: dict[str, list[str]] = {user_id: [] for user_id in user_ids}
    for row in rows:
        ids[row["user_id"]].append(row["id"])
    return ids
