"""Task ETags: the version a client saw (its `updated_at`), for `If-Match` / `If-None-Match`."""

from datetime import UTC, datetime, timedelta

from todo_api.errors import BadRequest

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A client holds one version of a task, or a few; a longer list is refused before it is parsed,
# so a header cannot turn into thousands of bind parameters or comparisons.
MAX_ENTITY_TAGS = 10


def task_etag(updated_at: datetime) -> str:
    """A task's version is when it last changed, to the microsecond."""
    microseconds = (updated_at - _EPOCH) // timedelta(microseconds=1)
    return f'"{microseconds:x}"'


def _version(tag: str) -> datetime | None:
    tag = tag.strip().removeprefix("W/")
    if len(tag) < 3 or not (tag.startswith('"') and tag.endswith('"')):
        return None
    try:
        return _EPOCH + timedelta(microseconds=int(tag[1:-1], 16))
    except (ValueError, OverflowError):
        return None


def versions_from_if_match(header: str | None) -> list[datetime] | None:
    """The versions an `If-Match` header accepts; None when any version will do (no header,
    or `*`). Tags this API did not issue can never match, so they yield no version."""
    if header is None or header.strip() == "*":
        return None
    versions = (_version(tag) for tag in _entity_tags(header, "If-Match"))
    return [version for version in versions if version is not None]


def tags_from_if_none_match(header: str | None) -> frozenset[str]:
    """The entity tags an `If-None-Match` header names, weak ones as their strong form, `*`
    as itself; none without the header."""
    if header is None:
        return frozenset()
    return frozenset(
        tag.strip().removeprefix("W/") for tag in _entity_tags(header, "If-None-Match")
    )


def matches_if_none_match(tags: frozenset[str], etag: str) -> bool:
    return etag in tags or "*" in tags


def _entity_tags(header: str, name: str) -> list[str]:
    if header.count(",") >= MAX_ENTITY_TAGS:
        raise BadRequest(f"{name} may list at most {MAX_ENTITY_TAGS} entity tags.")
    return header.split(",")
