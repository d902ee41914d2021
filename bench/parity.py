"""Before any load: do the API and the baseline answer the benchmarked requests alike?"""

from typing import Any

import httpx

from bench.workload import Caller

# Set by each server at write time, so they can only match in shape.
WRITE_TIME_FIELDS = {"id", "created_at", "updated_at"}


def compare(client: httpx.Client, api_url: str, baseline_url: str, caller: Caller) -> list[str]:
    """One line per benchmarked request shape: identical, or what differs."""
    headers = {"Authorization": f"Bearer {caller.token}"}
    reads = {
        "list-default": "/api/tasks",
        "list-filtered": "/api/tasks?status=pending&sort=due_date",
        "get-one": f"/api/tasks/{caller.task_ids[0]}",
    }
    if caller.deep_cursor:
        reads["list-deep"] = f"/api/tasks?cursor={caller.deep_cursor}"
    findings = []
    for name, path in reads.items():
        api = client.get(api_url + path, headers=headers)
        base = client.get(baseline_url + path, headers=headers)
        findings.append(_verdict(name, api, base, ignore=set()))

    body = {"title": "Parity check", "priority": "high", "due_date": "2030-01-01"}
    api = client.post(f"{api_url}/api/tasks", json=body, headers=headers)
    base = client.post(f"{baseline_url}/api/tasks", json=body, headers=headers)
    findings.append(_verdict("create", api, base, ignore=WRITE_TIME_FIELDS))

    # Two flips leave the task as it was.
    toggle = f"/api/tasks/{caller.task_ids[0]}/complete"
    api = client.patch(api_url + toggle, headers=headers)
    base = client.patch(baseline_url + toggle, headers=headers)
    findings.append(_verdict("toggle", api, base, ignore={"completed", "updated_at"}))
    return findings


def _verdict(name: str, api: httpx.Response, base: httpx.Response, ignore: set[str]) -> str:
    if api.status_code != base.status_code:
        return f"{name}: status differs (API {api.status_code}, baseline {base.status_code})"
    api_body, base_body = _strip(api.json(), ignore), _strip(base.json(), ignore)
    if api_body != base_body:
        return f"{name}: JSON differs: {_first_difference(api_body, base_body)}"
    if api.headers.get("x-next-cursor") != base.headers.get("x-next-cursor"):
        return f"{name}: next cursor differs"
    what = "same status and JSON" + (f" (except {', '.join(sorted(ignore))})" if ignore else "")
    return f"{name}: {what}"


def _strip(value: Any, ignore: set[str]) -> Any:
    if isinstance(value, list):
        return [_strip(item, ignore) for item in value]
    if isinstance(value, dict):
        return {key: item for key, item in value.items() if key not in ignore}
    return value


def _first_difference(api: Any, base: Any) -> str:
    if isinstance(api, list) and isinstance(base, list):
        if len(api) != len(base):
            return f"{len(api)} items against {len(base)}"
        for index, (left, right) in enumerate(zip(api, base, strict=True)):
            if left != right:
                return f"item {index}: {_first_difference(left, right)}"
    if isinstance(api, dict) and isinstance(base, dict):
        for key in sorted(set(api) | set(base)):
            if api.get(key) != base.get(key):
                return f"{key}: API {api.get(key)!r}, baseline {base.get(key)!r}"
    return f"API {api!r}, baseline {base!r}"[:300]
