"""One bounded wrk run, and what it measured."""

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_SCRIPT = Path(__file__).parent / "wrk" / "requests.lua"
RESULT_PREFIX = "BENCH_RESULT "
MAX_THREADS = 2


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    statuses: dict[str, int]
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("bench: wrk is not installed (apt-get install -y wrk)")
    return path


def wrk_version() -> str:
    result = subprocess.run(  # noqa: S603 (fixed arguments)
        [wrk_path(), "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    return (result.stdout or result.stderr).splitlines()[0].split(" Copyright")[0].strip()


def run_wrk(
    url: str, requests_file: Path, connections: int, seconds: int, timeout_seconds: int
) -> LoadResult:
    """`wrk -t<=2 -c<connections> -d<seconds>s --latency` replaying `requests_file`."""
    threads = min(MAX_THREADS, connections)
    command = [
        wrk_path(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
        f"--timeout={timeout_seconds}s", "--latency", "-s", str(LUA_SCRIPT), url,
        "--", str(requests_file),
    ]  # fmt: skip
    result = subprocess.run(  # noqa: S603 (fixed command, local target only)
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    line = next(
        (text for text in result.stdout.splitlines() if text.startswith(RESULT_PREFIX)), None
    )
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return _parse(json.loads(line.removeprefix(RESULT_PREFIX)))


def _parse(data: dict[str, object]) -> LoadResult:
    def number(key: str) -> float:
        value = data[key]
        assert isinstance(value, int | float), key
        return float(value)

    statuses = data.get("statuses") or {}
    assert isinstance(statuses, dict)
    return LoadResult(
        requests=int(number("requests")),
        seconds=number("duration_us") / 1e6,
        p50_ms=number("p50_us") / 1000,
        p90_ms=number("p90_us") / 1000,
        p99_ms=number("p99_us") / 1000,
        max_ms=number("max_us") / 1000,
        non2xx=int(number("non2xx")),
        statuses={str(status): int(count) for status, count in statuses.items()},
        connect_errors=int(number("connect_errors")),
        read_errors=int(number("read_errors")),
        write_errors=int(number("write_errors")),
        timeouts=int(number("timeouts")),
    )
