"""Task ETags: the version a client saw (its `updated_at`), for `If-Match` / `If-None-Match`."""

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
    versions = (_version(tag) for tag in header.split(","))
    return [version for version in versions if version is not None]


def matches_if_none_match(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))
