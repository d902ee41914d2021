"""Real server processes for tests: `todo-api serve` started as a user starts it, waited for
until it answers, and always gone afterwards; tokens from `todo-api token`; its JSON log lines."""

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import NEVER_REFUSED, SECRET, TODO_API, environment_without_settings

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    process: "subprocess.Popen[bytes]"
    base_url: str
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM to the server (as a service manager sends it), then its exit code; every
        process it started (the workers) must be gone by then."""
        self.process.send_signal(signal.SIGTERM)
        try:
            exit_code = self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"server did not stop within {STOP_TIMEOUT} s of SIGTERM:\n{self.stderr()}")
        deadline = time.monotonic() + 5
        while (left := live_group_members(self.process.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left == [], f"processes of the server outlived it: {left}"
        return exit_code


def live_group_members(pgid: int) -> list[int]:
    """Processes of a process group that are still running (zombies waiting to be reaped by
    init do not count); empty where there is no /proc to ask."""
    members = []
    for entry in Path("/proc").glob("[0-9]*"):
        with suppress(OSError):
            # After the ")" closing the command name: state, ppid, pgrp, ...
            state, _ppid, group = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
            if int(group) == pgid and state != "Z":
                members.append(int(entry.name))
    return members


def server_environment(database_url: str, data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment a test's `todo-api serve` runs with: none of the developer's own
    settings, the given database, the tests' secret, JSON logs, and `settings` on top."""
    return {
        **environment_without_settings(),
        "DATABASE_URL": database_url,
        "BETTER_AUTH_SECRET": SECRET,
        "LOG_FORMAT": "json",
        "DATA_DIR": str(data_dir),
        "RATE_LIMIT_PER_MINUTE": str(NEVER_REFUSED),
        **settings,
    }


@contextmanager
def running_server(args: list[str], *, cwd: Path, env: dict[str, str]) -> Iterator[Server]:
    """Start `todo-api serve …`, wait for /health, and make sure the process is gone after."""
    port = free_port()
    stderr_path = cwd / "server.stderr.log"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [TODO_API, "serve", "--port", str(port), *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            # Its own process group, so the workers can be killed with it whatever happens.
            start_new_session=True,
        )
    server = Server(process, f"http://127.0.0.1:{port}", stderr_path)
    try:
        _wait_until_healthy(server)
        yield server
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait_until_healthy(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(
                f"server exited with {server.process.returncode} before answering:\n"
                + server.stderr()
            )
        try:
            response = httpx.get(f"{server.base_url}/health", timeout=1)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        if response.status_code == 200 and response.json() == {"status": "healthy"}:
            return
        time.sleep(0.1)
    pytest.fail(f"server did not answer /health within {START_TIMEOUT} s:\n{server.stderr()}")


def issue_token(*args: str, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [TODO_API, "token", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token.count(".") == 2
    return token


def log_entries(stderr: str) -> list[dict[str, Any]]:
    """Every stderr line, each of which must be one JSON object."""
    entries = []
    for line in stderr.splitlines():
        if line.strip():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                pytest.fail(f"stderr line is not JSON: {line!r}")
            assert isinstance(entry, dict), line
            entries.append(entry)
    return entries
