"""What one connection may cost a real `todo-api serve` worker (todo_api/server.py, limits.py):
oversized heads, heads and bodies that never finish, idle connections, clients that stop
reading, and more connections than the worker takes, all driven over raw sockets."""

import json
import selectors
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import httpx
import pytest

import todo_api
from tests.conftest import SECRET, environment_without_settings, make_token
from tests.processes import Server, live_group_members, running_server

pytestmark = pytest.mark.slow

TIMEOUT = 1.0  # header, body, keep-alive and write timeouts of the shared server
SLACK = 1.0  # how much later than its timeout a connection may be closed
REQUEST = b"GET /health HTTP/1.1\r\nHost: test\r\n"
BUNDLE = Path(todo_api.__file__).parent / "static/swagger-ui/swagger-ui-bundle.js"


@contextmanager
def serving(tmp: Path, **limits: str) -> Iterator[Server]:
    """`todo-api serve` in one process (the worker is the server process), on SQLite."""
    env = {
        **environment_without_settings(),
        "DATABASE_URL": f"sqlite:///{tmp / 'limits.db'}",
        "BETTER_AUTH_SECRET": SECRET,
        "LOG_FORMAT": "json",
        "DATA_DIR": str(tmp / "state"),
        **limits,
    }
    with running_server(["--workers", "1"], cwd=tmp, env=env) as server:
        yield server
        stderr = server.stderr()
    assert "Traceback" not in stderr, stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    seconds = str(TIMEOUT)
    with serving(
        tmp_path_factory.mktemp("limits"),
        SERVER_HEADER_TIMEOUT=seconds,
        SERVER_BODY_TIMEOUT=seconds,
        SERVER_KEEPALIVE_TIMEOUT=str(int(TIMEOUT)),
        SERVER_WRITE_TIMEOUT=seconds,
    ) as server:
        yield server


def connect(server: Server, *, receive_buffer: int | None = None) -> socket.socket:
    host, port = server.base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(5)
    sock.connect((host, int(port)))
    return sock


def read_until_closed(sock: socket.socket, within: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    data = b""
    while (left := started + within - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        except TimeoutError:
            pytest.fail(f"connection still open after {within} s; received {data[:200]!r}")
        if not chunk:
            break
        data += chunk
    else:
        pytest.fail(f"connection still open after {within} s; received {data[:200]!r}")
    return data, time.monotonic() - started


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response with a Content-Length, leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    status, headers, body = parse(data)
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data + body!r}"
        body += chunk
    return status, headers, body


def parse(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = (line.split(":", 1) for line in lines)
    return int(status_line.split()[1]), {k.lower(): v.strip() for k, v in fields}, body


def assert_refused(data: bytes, status: int, detail: str) -> None:
    """A JSON error answer that closes the connection."""
    assert data, "closed without an answer"
    code, headers, body = parse(data)
    assert code == status, data
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert headers["x-request-id"]
    assert json.loads(body) == {"detail": detail}


def resident_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def open_files(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def test_headers_over_the_cap_get_431_and_the_connection_is_closed(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(REQUEST + b"X-Big: " + b"a" * 20_000 + b"\r\n\r\n")
        data, _ = read_until_closed(sock, within=5)
    assert_refused(data, 431, "Request headers are too large.")


def test_headers_under_the_cap_are_served(server: Server) -> None:
    response = httpx.get(f"{server.base_url}/health", headers={"X-Big": "a" * 8_000}, timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}


@pytest.mark.parametrize(
    "flood",
    [b"X-Big: " + b"a" * 65_536, b"X-Small: a\r\n" * 5_000],
    ids=["one-endless-header", "many-headers"],
)
def test_a_header_flood_is_cut_off_and_does_not_grow_the_worker(
    server: Server, flood: bytes
) -> None:
    pid = server.process.pid
    assert live_group_members(pid) == [pid], "expected one process, the worker itself"
    httpx.get(f"{server.base_url}/health", headers={"X-Big": "a" * 8_000}, timeout=5)
    before = resident_kb(pid)
    total = 8 * 1024 * 1024
    sent = 0
    with connect(server) as sock, suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(REQUEST)
        while sent < total:
            sock.sendall(flood)
            sent += len(flood)
            time.sleep(0.001)
    grown = resident_kb(pid) - before
    print(f"\nheader flood: {sent} of {total} bytes accepted, worker RSS grew {grown} kB")
    assert sent < total, "the server took the whole flood"
    assert grown < 5 * 1024


@pytest.mark.parametrize("after_a_request", [False, True], ids=["fresh", "kept-alive"])
def test_a_trickled_head_gets_408_despite_the_trickle(
    server: Server, after_a_request: bool
) -> None:
    with connect(server) as sock:
        if after_a_request:
            sock.sendall(REQUEST + b"\r\n")
            assert read_response(sock)[0] == 200
        started = time.monotonic()
        sock.sendall(REQUEST + b"X-Slow: ")
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            while time.monotonic() - started < TIMEOUT + 3:
                if selector.select(timeout=0.3):
                    break
                with suppress(BrokenPipeError, ConnectionResetError):
                    sock.sendall(b"a")
        data, _ = read_until_closed(sock, within=2)
        elapsed = time.monotonic() - started
    assert_refused(data, 408, "The request took too long to arrive.")
    assert TIMEOUT - 0.1 < elapsed < TIMEOUT + SLACK


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    server: Server,
) -> None:
    with connect(server) as sock:
        data, elapsed = read_until_closed(sock, within=TIMEOUT + 3)
    assert data == b""
    assert TIMEOUT - 0.1 < elapsed < TIMEOUT + SLACK


def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(
    server: Server,
) -> None:
    with connect(server) as sock:
        sock.sendall(REQUEST + b"\r\n")
        status, headers, _ = read_response(sock)
        assert status == 200
        assert "connection" not in headers  # kept alive
        data, elapsed = read_until_closed(sock, within=TIMEOUT + 3)
    assert data == b""
    assert TIMEOUT - 0.1 < elapsed < TIMEOUT + SLACK


def test_a_body_that_never_arrives_gets_408_after_the_body_timeout(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"POST /api/auth/login HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            b'{"email": '
        )
        data, elapsed = read_until_closed(sock, within=TIMEOUT + 3)
    assert_refused(data, 408, "The request took too long to arrive.")
    assert TIMEOUT - 0.1 < elapsed < TIMEOUT + SLACK


def test_a_client_that_stops_reading_is_disconnected_after_the_write_timeout(
    server: Server,
) -> None:
    # Six answers of 1.7 MB asked for at once (pipelined), none read: more than the kernel's
    # socket buffers hold, so the server's own buffer fills and it stops writing.
    answers = 6
    request = b"GET /docs/assets/swagger-ui/swagger-ui-bundle.js HTTP/1.1\r\nHost: test\r\n\r\n"
    with connect(server, receive_buffer=4096) as sock:
        sock.sendall(request * answers)
        time.sleep(TIMEOUT + 2)
        data, _ = read_until_closed(sock, within=10)
    print(f"\nclient that stopped reading: {len(data)} bytes sent before the server gave up")
    assert len(data) < answers * BUNDLE.stat().st_size
    assert "Client read nothing" in server.stderr()


def test_past_the_concurrency_ceiling_requests_get_503_until_connections_close(
    tmp_path: Path,
) -> None:
    with serving(tmp_path, SERVER_MAX_CONCURRENCY="3", SERVER_HEADER_TIMEOUT="10") as server:
        with ExitStack() as held:
            for _ in range(3):
                held.enter_context(connect(server)).sendall(REQUEST)
            time.sleep(0.2)
            with connect(server) as sock:
                sock.sendall(REQUEST + b"\r\n")
                data, _ = read_until_closed(sock, within=5)
            assert_refused(data, 503, "The server is at capacity; try again shortly.")
            assert parse(data)[1]["retry-after"] == "2"
        assert eventually_healthy(server.base_url, within=3)


def test_hundreds_of_half_sent_heads_are_all_closed_and_service_goes_on(
    server: Server,
) -> None:
    pid = server.process.pid
    files_before = open_files(pid)
    started = time.monotonic()
    answers: dict[socket.socket, bytes] = {}
    with ExitStack() as stack, selectors.DefaultSelector() as selector:
        for _ in range(300):
            sock = stack.enter_context(connect(server))
            sock.sendall(REQUEST)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
            answers[sock] = b""
        still_open = len(answers)
        while still_open and time.monotonic() - started < TIMEOUT + 10:
            for key, _ in selector.select(timeout=0.5):
                connection = key.fileobj
                assert isinstance(connection, socket.socket)
                try:
                    chunk = connection.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                answers[connection] += chunk
                if not chunk:
                    selector.unregister(connection)
                    still_open -= 1
        elapsed = time.monotonic() - started
    print(f"\n300 half-sent heads: all closed after {elapsed:.2f} s")
    assert still_open == 0, f"{still_open} connections still open after {elapsed:.1f} s"
    assert elapsed < TIMEOUT + 5
    statuses = {parse(answer)[0] if answer else None for answer in answers.values()}
    assert statuses == {408}
    assert eventually_healthy(server.base_url, within=3)
    assert open_files(pid) <= files_before + 5


def eventually_healthy(base_url: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        response = httpx.get(f"{base_url}/health", timeout=2)
        if response.status_code == 200:
            return True
        time.sleep(0.1)
    return False


def test_a_long_if_match_never_reaches_the_database(server: Server) -> None:
    """Finding 3 on a real server: tens of thousands of entity tags are stopped by the head cap
    (431), and a list that fits under it by the app (400, before any query): neither becomes
    bind parameters, and the task is unchanged."""
    headers = {"Authorization": f"Bearer {make_token('if-match-user')}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=5) as http:
        task = http.post("/api/tasks", json={"title": "v1"})
        assert task.status_code == 201
        url, etag = task.headers["location"], task.headers["etag"]
        for count, status in [(40_000, 431), (1_000, 400)]:
            tags = ", ".join([*(f'"{n:x}"' for n in range(count)), etag])
            try:
                response = http.put(url, json={"title": "v2"}, headers={"If-Match": tags})
            except httpx.TransportError:
                assert status == 431  # the server may close before the client reads its 431
                continue
            assert response.status_code == status, response.text
        assert http.get(url).json()["title"] == "v1"
