"""`/api/tags` (list with counts, rename, merge, delete), the `tag=` listing filter, and that
one user's tags never reach, show or change another's."""

import json
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from httpx import AsyncClient

from tests.conftest import DatabaseProbe, TaskFactory, auth, stored_tags

NOT_FOUND = {"detail": "Tag not found"}
JSON = {"Content-Type": "application/json"}


def _parse(ts: str) -> datetime:
    parsed = datetime.fromisoformat(ts)
    assert parsed.utcoffset() == timedelta(0), ts
    return parsed


async def _row_tags(db: DatabaseProbe, task_id: str) -> list[str]:
    row = await db.task(task_id)
    assert row is not None, task_id
    return stored_tags(row["tags"])


async def _task_tag_keys(db: DatabaseProbe, task_id: str) -> list[str]:
    rows = await db.rows(
        "SELECT key FROM task_tags WHERE task_id = :id ORDER BY key", id=db.task_key(task_id)
    )
    return [row["key"] for row in rows]


async def _user_tags(db: DatabaseProbe, user: str) -> dict[str, str]:
    rows = await db.rows("SELECT key, name FROM tags WHERE user_id = :u", u=user)
    return {row["key"]: row["name"] for row in rows}


async def _snapshot(db: DatabaseProbe, user: str) -> dict[str, list[dict[str, Any]]]:
    """Everything the database holds for `user`'s tasks and tags."""
    return {
        "tasks": await db.rows("SELECT * FROM tasks WHERE user_id = :u ORDER BY id", u=user),
        "tags": await db.rows("SELECT * FROM tags WHERE user_id = :u ORDER BY key", u=user),
        "task_tags": await db.rows(
            "SELECT * FROM task_tags WHERE user_id = :u ORDER BY task_id, key", u=user
        ),
    }


async def _tags(client: AsyncClient, user: str = "alice") -> list[dict[str, Any]]:
    response = await client.get("/api/tags", headers=auth(user))
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()
    return listed


async def _get(client: AsyncClient, task_id: str, user: str = "alice") -> dict[str, Any]:
    response = await client.get(f"/api/tasks/{task_id}", headers=auth(user))
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


async def _rename(client: AsyncClient, name: str, new: Any, user: str = "alice") -> Any:
    return await client.patch(
        f"/api/tags/{quote(name, safe='')}",
        content=json.dumps({"name": new}),
        headers={**auth(user), **JSON},
    )


async def _delete(client: AsyncClient, name: str, user: str = "alice") -> Any:
    return await client.delete(f"/api/tags/{quote(name, safe='')}", headers=auth(user))


async def _listed_ids(client: AsyncClient, params: str, user: str = "alice") -> list[str]:
    response = await client.get(f"/api/tasks?{params}", headers=auth(user))
    assert response.status_code == 200, response.text
    return [task["id"] for task in response.json()]


# --- listing the tags --------------------------------------------------------------------------


async def test_tags_need_a_token(client: AsyncClient) -> None:
    for method, path in [("GET", ""), ("PATCH", "/work"), ("DELETE", "/work")]:
        response = await client.request(method, f"/api/tags{path}", json={"name": "x"})
        assert response.status_code == 401, (method, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_new_user_has_no_tags(client: AsyncClient) -> None:
    assert await _tags(client, "nobody-yet") == []


async def test_list_counts_and_sorts_case_insensitively(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    await create_task(tags=["work", "Zulu"])
    await create_task(tags=["WORK", "apple", "beta"])
    await create_task(tags=["Alpha", "work"])
    await create_task(tags=[])
    await create_task("bob", tags=["work", "bobs-own"])
    assert await _tags(client) == [
        {"name": "Alpha", "count": 1},
        {"name": "apple", "count": 1},
        {"name": "beta", "count": 1},
        {"name": "work", "count": 3},
        {"name": "Zulu", "count": 1},
    ]


async def test_tag_nobody_carries_is_not_listed(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    dropped = await create_task(tags=["gone", "kept"])
    deleted = await create_task(tags=["deleted", "kept"])
    response = await client.patch(
        f"/api/tasks/{dropped['id']}", json={"tags": ["kept"]}, headers=auth()
    )
    assert response.status_code == 200, response.text
    response = await client.delete(f"/api/tasks/{deleted['id']}", headers=auth())
    assert response.status_code == 204
    assert await _tags(client) == [{"name": "kept", "count": 1}]
    cleared = await client.patch(f"/api/tasks/{dropped['id']}", json={"tags": []}, headers=auth())
    assert cleared.status_code == 200
    assert await _tags(client) == []
    # And a tag no task carries cannot be renamed or deleted.
    assert (await _rename(client, "gone", "back")).status_code == 404
    assert (await _delete(client, "deleted")).status_code == 404


# --- rename ------------------------------------------------------------------------------------


async def test_rename_on_every_task(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    first = await create_task(tags=["work", "home"])
    second = await create_task(tags=["Work"])
    response = await _rename(client, "WORK", "Job")
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "Job", "count": 2}
    assert (await _get(client, first["id"]))["tags"] == ["home", "Job"]
    assert (await _get(client, second["id"]))["tags"] == ["Job"]
    assert await _row_tags(db, first["id"]) == ["home", "Job"]
    assert await _task_tag_keys(db, first["id"]) == ["home", "job"]
    assert await _task_tag_keys(db, second["id"]) == ["job"]
    assert await _user_tags(db, "alice") == {"home": "home", "job": "Job"}
    assert await _tags(client) == [{"name": "home", "count": 1}, {"name": "Job", "count": 2}]
    # The old name is gone; the new one is matched in any case.
    assert (await _rename(client, "work", "x")).json() == NOT_FOUND
    filtered = await _listed_ids(client, "tag=JOB")
    assert sorted(filtered) == sorted([first["id"], second["id"]])
    assert await _listed_ids(client, "tag=work") == []


async def test_rename_changing_only_the_case(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    task = await create_task(tags=["work", "b"])
    response = await _rename(client, "work", "Work")
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "Work", "count": 1}
    assert (await _get(client, task["id"]))["tags"] == ["b", "Work"]
    assert await _row_tags(db, task["id"]) == ["b", "Work"]
    assert await _task_tag_keys(db, task["id"]) == ["b", "work"]
    assert await _user_tags(db, "alice") == {"b": "b", "work": "Work"}
    # The new spelling is the tag's one spelling from now on.
    later = await create_task(tags=["WORK"])
    assert later["tags"] == ["Work"]


async def test_rename_to_the_same_name_answers_it(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    task = await create_task(tags=["work"])
    response = await _rename(client, "work", "work")
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "work", "count": 1}
    assert (await _get(client, task["id"]))["tags"] == ["work"]


async def test_rename_trims_the_new_name(client: AsyncClient, create_task: TaskFactory) -> None:
    task = await create_task(tags=["work"])
    response = await _rename(client, "work", "  job  ")
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "job", "count": 1}
    assert (await _get(client, task["id"]))["tags"] == ["job"]


async def test_merge_into_an_existing_tag(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    both = await create_task(tags=["work", "Job", "other"])
    only_job = await create_task(tags=["job"])
    response = await _rename(client, "job", "WORK")
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "WORK", "count": 2}
    # A task that had both has the merged tag once.
    assert (await _get(client, both["id"]))["tags"] == ["other", "WORK"]
    assert await _row_tags(db, both["id"]) == ["other", "WORK"]
    assert await _task_tag_keys(db, both["id"]) == ["other", "work"]
    assert (await _get(client, only_job["id"]))["tags"] == ["WORK"]
    assert await _task_tag_keys(db, only_job["id"]) == ["work"]
    assert await _user_tags(db, "alice") == {"other": "other", "work": "WORK"}
    assert await _tags(client) == [{"name": "other", "count": 1}, {"name": "WORK", "count": 2}]


async def test_merge_respells_the_tasks_that_only_had_the_target(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    """A user's tag has one spelling: after merging "job" into "work" as "WORK", a task that
    carried only "work" shows "WORK" too (and, its JSON having changed, a new version)."""
    only_work = await create_task(tags=["work"])
    await create_task(tags=["job"])
    response = await _rename(client, "job", "WORK")
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "WORK", "count": 2}
    assert await _tags(client) == [{"name": "WORK", "count": 2}]
    now = await _get(client, only_work["id"])
    assert now["tags"] == ["WORK"]
    assert await _row_tags(db, only_work["id"]) == ["WORK"]
    assert _parse(now["updated_at"]) > _parse(only_work["updated_at"])


@pytest.mark.parametrize("operation", ["rename", "delete"])
async def test_rename_and_delete_move_only_affected_versions(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, operation: str
) -> None:
    affected = await create_task(tags=["work", "x"])
    unaffected = await create_task(tags=["x"])
    untagged = await create_task()
    etags = {}
    for task in (affected, unaffected, untagged):
        response = await client.get(f"/api/tasks/{task['id']}", headers=auth())
        etags[task["id"]] = response.headers["etag"]
    rows_before = {task["id"]: await db.task(task["id"]) for task in (unaffected, untagged)}
    if operation == "rename":
        response = await _rename(client, "Work", "job")
        assert response.status_code == 200, response.text
    else:
        response = await _delete(client, "Work")
        assert response.status_code == 204, response.text
    after = await client.get(f"/api/tasks/{affected['id']}", headers=auth())
    assert after.headers["etag"] != etags[affected["id"]]
    assert _parse(after.json()["updated_at"]) > _parse(affected["updated_at"])
    assert after.json()["created_at"] == affected["created_at"]
    stale = await client.patch(
        f"/api/tasks/{affected['id']}",
        json={"title": "stale"},
        headers={**auth(), "If-Match": etags[affected["id"]]},
    )
    assert stale.status_code == 412
    for task in (unaffected, untagged):
        response = await client.get(f"/api/tasks/{task['id']}", headers=auth())
        assert response.json() == task
        assert response.headers["etag"] == etags[task["id"]]
        assert await db.task(task["id"]) == rows_before[task["id"]]


# --- delete ------------------------------------------------------------------------------------


async def test_delete_removes_the_tag_from_every_task(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    first = await create_task(tags=["Work", "home"])
    second = await create_task(tags=["work"])
    response = await _delete(client, "WORK")
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert (await _get(client, first["id"]))["tags"] == ["home"]
    assert (await _get(client, second["id"]))["tags"] == []
    assert await _row_tags(db, first["id"]) == ["home"]
    assert await _row_tags(db, second["id"]) == []
    assert await _task_tag_keys(db, first["id"]) == ["home"]
    assert await _task_tag_keys(db, second["id"]) == []
    assert await _user_tags(db, "alice") == {"home": "home"}
    assert await _tags(client) == [{"name": "home", "count": 1}]
    assert await db.count_tasks("alice") == 2
    again = await _delete(client, "work")
    assert again.status_code == 404
    assert again.json() == NOT_FOUND
    # Used again afterwards, it takes the new spelling.
    assert (await create_task(tags=["WORK"]))["tags"] == ["WORK"]


# --- 404 and 400 -------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["rename", "delete"])
async def test_unknown_tag_is_404_and_changes_nothing(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, operation: str
) -> None:
    await create_task(tags=["work"])
    before = await _snapshot(db, "alice")
    if operation == "rename":
        response = await _rename(client, "nope", "work")
    else:
        response = await _delete(client, "nope")
    assert response.status_code == 404, response.text
    assert response.json() == NOT_FOUND
    assert await _snapshot(db, "alice") == before


async def test_renaming_an_unknown_tag_to_a_new_name_creates_nothing(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    await create_task(tags=["work"])
    before = await _snapshot(db, "alice")
    response = await _rename(client, "nope", "Brand New")
    assert response.status_code == 404, response.text
    assert await _snapshot(db, "alice") == before
    assert await _user_tags(db, "alice") == {"work": "work"}
    # Nor does it take the spelling it would have had.
    assert (await create_task(tags=["brand new"]))["tags"] == ["brand new"]


INVALID_PATH_NAMES = [
    pytest.param("a,b", id="comma"),
    pytest.param("x" * 51, id="51 characters"),
    pytest.param("bell\u0007", id="control character"),
    pytest.param("next\u0085line", id="U+0085"),
    pytest.param(" ", id="blank"),
]


@pytest.mark.parametrize("operation", ["rename", "delete"])
@pytest.mark.parametrize("name", INVALID_PATH_NAMES)
async def test_invalid_name_in_path_is_400(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, operation: str, name: str
) -> None:
    await create_task(tags=["work", "a"])
    before = await _snapshot(db, "alice")
    if operation == "rename":
        response = await _rename(client, name, "fine")
    else:
        response = await _delete(client, name)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert "name" in payload["detail"]
    assert [error["field"] for error in payload["errors"]] == ["name"]
    assert await _snapshot(db, "alice") == before


INVALID_NEW_NAMES: list[Any] = [
    pytest.param("a,b", id="comma"),
    pytest.param("a/b", id="slash"),
    pytest.param("x" * 51, id="51 characters"),
    pytest.param("tab\there", id="control character"),
    pytest.param("c1\u009f", id="U+009F"),
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param(None, id="null"),
    pytest.param(["work"], id="a list"),
    pytest.param(7, id="a number"),
]


@pytest.mark.parametrize("new", INVALID_NEW_NAMES)
async def test_invalid_new_name_is_400(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, new: Any
) -> None:
    await create_task(tags=["work"])
    before = await _snapshot(db, "alice")
    response = await _rename(client, "work", new)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert "name" in payload["detail"]
    assert [error["field"] for error in payload["errors"]] == ["name"]
    assert await _snapshot(db, "alice") == before


@pytest.mark.parametrize("body", [b"{}", b'{"title": "x"}', b"not json", b"[]"])
async def test_rename_without_a_new_name_is_400(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, body: bytes
) -> None:
    await create_task(tags=["work"])
    before = await _snapshot(db, "alice")
    response = await client.patch("/api/tags/work", content=body, headers={**auth(), **JSON})
    assert response.status_code == 400, response.text
    assert await _snapshot(db, "alice") == before


# --- the tag= filter ---------------------------------------------------------------------------


async def test_tag_filter_basics(client: AsyncClient, create_task: TaskFactory) -> None:
    work = await create_task(title="w", tags=["Work"])
    both = await create_task(title="wh", tags=["work", "home"])
    home = await create_task(title="h", tags=["home"])
    await create_task(title="none")
    # Newest first, as the default listing.
    assert await _listed_ids(client, "tag=work") == [both["id"], work["id"]]
    assert await _listed_ids(client, "tag=WORK") == [both["id"], work["id"]]
    assert await _listed_ids(client, "tag=%20work%20") == [both["id"], work["id"]]
    assert await _listed_ids(client, "tag=home") == [home["id"], both["id"]]
    assert await _listed_ids(client, "tag=work&tag=HOME") == [both["id"]]
    assert await _listed_ids(client, "tag=work&tag=work") == [both["id"], work["id"]]
    assert await _listed_ids(client, "tag=work&tag=nothing") == []
    assert await _listed_ids(client, "tag=nothing") == []


@pytest.mark.parametrize(
    "params", ["tag=a,b", "tag=a%2Cb", "tag=ok&tag=a%2Fb", "tag=" + "x" * 51, "tag=%07"]
)
async def test_invalid_tag_filter_is_400(
    client: AsyncClient, create_task: TaskFactory, params: str
) -> None:
    await create_task(tags=["a", "b"])
    response = await client.get(f"/api/tasks?{params}", headers=auth())
    assert response.status_code == 400, response.text
    payload = response.json()
    assert "tag" in payload["detail"]
    assert [error["field"] for error in payload["errors"]] == ["tag"]


# --- isolation ---------------------------------------------------------------------------------


async def test_list_shows_only_the_callers_tags(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    await create_task("alice", tags=["Secret", "work"])
    await create_task("alice", tags=["work"])
    assert await _tags(client, "bob") == []
    await create_task("bob", tags=["WORK"])
    assert await _tags(client, "bob") == [{"name": "WORK", "count": 1}]
    assert await _tags(client, "alice") == [
        {"name": "Secret", "count": 1},
        {"name": "work", "count": 2},
    ]


@pytest.mark.parametrize("bob_has_it", [False, True])
@pytest.mark.parametrize("operation", ["rename", "delete"])
async def test_another_users_tag_is_not_found_and_untouched(
    client: AsyncClient,
    create_task: TaskFactory,
    db: DatabaseProbe,
    operation: str,
    bob_has_it: bool,
) -> None:
    alices = [await create_task("alice", tags=["secret", "work"]) for _ in range(2)]
    if bob_has_it:
        await create_task("bob", tags=["other"])
    alice_before = await _snapshot(db, "alice")
    bob_before = await _snapshot(db, "bob")
    if operation == "rename":
        response = await _rename(client, "secret", "mine now", user="bob")
    else:
        response = await _delete(client, "SECRET", user="bob")
    assert response.status_code == 404, response.text
    assert response.json() == NOT_FOUND
    assert "secret" not in response.text
    assert await _snapshot(db, "alice") == alice_before
    assert await _snapshot(db, "bob") == bob_before
    for task in alices:
        assert await _get(client, task["id"]) == task


@pytest.mark.parametrize("operation", ["rename", "merge", "delete"])
async def test_changing_a_tag_both_users_have_changes_only_the_callers(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, operation: str
) -> None:
    alices = [await create_task("alice", tags=["work", "job"]) for _ in range(2)]
    bobs = await create_task("bob", tags=["Work"])
    await create_task("bob", tags=["job"])
    alice_before = await _snapshot(db, "alice")
    if operation == "rename":
        response = await _rename(client, "work", "office", user="bob")
        assert response.json() == {"name": "office", "count": 1}
        expected = ["office"]
    elif operation == "merge":
        response = await _rename(client, "work", "Job", user="bob")
        assert response.json() == {"name": "Job", "count": 2}
        expected = ["Job"]
    else:
        response = await _delete(client, "work", user="bob")
        assert response.status_code == 204
        expected = []
    assert response.status_code in {200, 204}, response.text
    assert (await _get(client, bobs["id"], "bob"))["tags"] == expected
    assert await _snapshot(db, "alice") == alice_before
    for task in alices:
        assert await _get(client, task["id"]) == task
    assert await _tags(client, "alice") == [
        {"name": "job", "count": 2},
        {"name": "work", "count": 2},
    ]


async def test_tag_filter_never_lists_another_users_tasks(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    for _ in range(3):
        await create_task("alice", tags=["work"])
    assert await _listed_ids(client, "tag=work", user="bob") == []
    bobs = await create_task("bob", tags=["WORK"])
    for params in [
        "tag=work",
        "tag=Work&status=pending",
        "tag=work&sort=title",
        "tag=work&limit=1",
    ]:
        assert await _listed_ids(client, params, user="bob") == [bobs["id"]]
    assert len(await _listed_ids(client, "tag=work", user="alice")) == 3
