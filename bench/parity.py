"""Before any load: do the API (and the FastAPI floor) answer the benchmarked requests as the
baseline does?"""

from typing import Any

import httpx

from bench.workload import Caller

# Set by each server at write time, so they can only match in shape.
WRITE_TIME_FIELDS = {"id", "created_at", "updated_at"}


def _reads(caller: Caller) -> dict[str, str]:
    """The path of each read scenario, for this caller."""
    reads = {
        "list-default": "/api/tasks",
        "list-filtered": "/api/tasks?status=pending&sort=due_date",
        "get-one": f"/api/tasks/{caller.task_ids[0]}",
    }
    if caller.deep_cursor:
        reads["list-deep"] = f"/api/tasks?cursor={caller.deep_cursor}"
    return reads


def _compare_reads(
    client: httpx.Client, label: str, url: str, baseline_url: str, caller: Caller, names: list[str]
) -> list[str]:
    headers = {"Authorization": f"Bearer {caller.token}"}
    reads = _reads(caller)
    findings = []
    for name in names:
        answer = client.get(url + reads[name], headers=headers)
        base = client.get(baseline_url + reads[name], headers=headers)
        findings.append(_verdict(name, label, answer, base, ignore=set()))
    return findings


def compare_floor(
    client: httpx.Client, floor_url: str, baseline_url: str, caller: Caller, names: list[str]
) -> list[str]:
    """The FastAPI floor against the baseline, for the scenarios it serves: one line each."""
    findings = _compare_reads(client, "FastAPI floor", floor_url, baseline_url, caller, names)
    return [f"FastAPI floor, {finding}" for finding in findings]


def compare(client: httpx.Client, api_url: str, baseline_url: str, caller: Caller) -> list[str]:
    """One line per benchmarked request shape: identical, or what differs."""
    headers = {"Authorization": f"Bearer {caller.token}"}
    reads = list(_reads(caller))
    findings = _compare_reads(client, "API", api_url, baseline_url, caller, reads)

    body = {"title": "Parity check", "priority": "high", "due_date": "2030-01-01"}
    api = client.post(f"{api_url}/api/tasks", json=body, headers=headers)
    base = client.post(f"{baseline_url}/api/tasks", json=body, headers=headers)
    findings.append(_verdict("create", "API", api, base, ignore=WRITE_TIME_FIELDS))

    # The API flips the task, the baseline flips it back and again, so both answers are of the
    # same flip; the API's last flip leaves the task as it was. `completed_at` is each flip's
    # own time, so it is compared only as set or not.
    toggle = f"/api/tasks/{caller.task_ids[0]}/complete"
    api = client.patch(api_url + toggle, headers=headers)
    client.patch(baseline_url + toggle, headers=headers).raise_for_status()
    base = client.patch(baseline_url + toggle, headers=headers)
    client.patch(api_url + toggle, headers=headers).raise_for_status()
    findings.append(
        _verdict("toggle", "API", api, base, ignore={"updated_at"}, when_set={"completed_at"})
    )
    return findings


def _verdict(
    name: str,
    label: str,
    answer: httpx.Response,
    base: httpx.Response,
    ignore: set[str],
    when_set: frozenset[str] | set[str] = frozenset(),
) -> str:
    """Same status, JSON, cursor and ETag? Fields in `ignore` are not compared, those in
    `when_set` only as null or not."""
    if answer.status_code != base.status_code:
        return f"{name}: status differs ({label} {answer.status_code}, baseline {base.status_code})"
    answer_body = _strip(answer.json(), ignore, when_set)
    base_body = _strip(base.json(), ignore, when_set)
    if answer_body != base_body:
        return f"{name}: JSON differs: {_first_difference(label, answer_body, base_body)}"
    if answer.headers.get("x-next-cursor") != base.headers.get("x-next-cursor"):
        return f"{name}: next cursor differs"
    # A task's ETag is its `updated_at`, so it can only match where that does.
    tags = answer.headers.get("etag"), base.headers.get("etag")
    if "updated_at" not in ignore and tags[0] != tags[1]:
        return f"{name}: ETag differs ({label} {tags[0]}, baseline {tags[1]})"
    exceptions = [*sorted(ignore), *(f"{key} set or null alike" for key in sorted(when_set))]
    what = "same status and JSON" + (f" (except {', '.join(exceptions)})" if exceptions else "")
    return f"{name}: {what}"


def _strip(value: Any, ignore: set[str], when_set: frozenset[str] | set[str]) -> Any:
    if isinstance(value, list):
        return [_strip(item, ignore, when_set) for item in value]
    if isinstance(value, dict):
        return {
            key: (item is not None if key in when_set else item)
            for key, item in value.items()
            if key not in ignore
        }
    return value


def _first_difference(label: str, answer: Any, base: Any) -> str:
    if isinstance(answer, list) and isinstance(base, list):
        if len(answer) != len(base):
            return f"{len(answer)} items against {len(base)}"
        for index, (left, right) in enumerate(zip(answer, base, strict=True)):
            if left != right:
                return f"item {index}: {_first_difference(label, left, right)}"
    if isinstance(answer, dict) and isinstance(base, dict):
        for key in sorted(set(answer) | set(base)):
            if answer.get(key) != base.get(key):
                return f"{key}: {label} {answer.get(key)!r}, baseline {base.get(key)!r}"
    return f"{label} {answer!r}, baseline {base!r}"[:300]
