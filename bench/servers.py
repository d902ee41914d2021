"""The servers under load: started on free local ports, always stopped with SIGTERM."""

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 40


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    url: str
    log: Path


@dataclass(frozen=True, slots=True)
class Launch:
    """How to start one server: its name (and log file name), command and port."""

    name: str
    command: list[str]
    port: int


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def api_command(venv_bin: Path, port: int, workers: int) -> list[str]:
    return [
        str(venv_bin / "todo-api"), "serve",
        "--host", HOST, "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip


def uvicorn_command(venv_bin: Path, repo: Path, app: str, port: int, workers: int) -> list[str]:
    """One of the bench's own apps (`bench.baseline:app`, `bench.fastapi_floor:app`)."""
    return [
        str(venv_bin / "python"), "-m", "uvicorn", app,
        "--app-dir", str(repo), "--host", HOST, "--port", str(port),
        "--workers", str(workers), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


@contextmanager
def running(
    name: str, command: list[str], port: int, env: dict[str, str], log: Path
) -> Iterator[Server]:
    """Start `command`, wait until `/health` answers, and stop it on the way out, however the
    block ends."""
    with log.open("wb") as log_file:
        process = subprocess.Popen(  # noqa: S603 (fixed command built above)
            command,
            env={**os.environ, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so no worker can outlive it
        )
        try:
            server = Server(name, f"http://{HOST}:{port}", log)
            _wait_healthy(server, process)
            yield server
        finally:
            _stop(process)


@contextmanager
def all_running(
    launches: list[Launch], env: dict[str, str], logs: Path
) -> Iterator[dict[str, Server]]:
    """Every server of `launches` running, by name; all stopped on the way out."""
    with ExitStack() as stack:
        yield {
            launch.name: stack.enter_context(
                running(launch.name, launch.command, launch.port, env, logs / f"{launch.name}.log")
            )
            for launch in launches
        }


def _wait_healthy(server: Server, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {process.returncode}:\n{tail(server.log)}"
            )
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} did not become healthy:\n{tail(server.log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (graceful: in-flight requests finish), then SIGKILL to the group if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # Workers share the group; none may survive their supervisor.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def tail(log: Path, lines: int = 30) -> str:
    if not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
