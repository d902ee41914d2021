"""The whole benchmark, start to finish: fresh database, seed, the servers, every scenario
under wrk back to back, the scaling run, the report; then everything stopped and dropped."""

import asyncio
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

from bench import baseline, database, parity, report, servers
from bench.load import LoadResult, run_wrk, wrk_path, wrk_version
from bench.options import Options, parse_options
from bench.seed import SeededUser, TaskFactory, seed_users, task_ids_by_user
from bench.workload import (
    TASKS_SAMPLED_PER_USER,
    Caller,
    Request,
    cursor_after,
    deep_position,
    scenario_requests,
    sign_token,
    write_requests,
)

REPO = Path(__file__).resolve().parent.parent
# Fixed, public, and only ever used against the throwaway database.
BENCH_SECRET = "todo-api-benchmark-secret-not-for-production-use"  # noqa: S105
HTTP_TIMEOUT_SECONDS = 60.0
# bench/fastapi_floor.py serves the scenarios of the throughput targets, to split their gap.
FLOOR_SCENARIOS = report.TARGET_SCENARIOS
# The servers on asyncpg, besides the API, by name: `uvicorn <app>`.
ASYNCPG_APPS = {"baseline": "bench.baseline:app", "fastapi-floor": "bench.fastapi_floor:app"}
# They close connections idle for baseline.IDLE_CONNECTION_SECONDS; before one of them runs,
# the other is left that long and a margin, so that during a run only the API's pool and one
# asyncpg pool are open (all three do not fit in PostgreSQL's default max_connections, 100).
HANDOVER_SECONDS = baseline.IDLE_CONNECTION_SECONDS + 1.0


@dataclass(frozen=True, slots=True)
class Seeded:
    callers: list[SeededUser]
    scaling: list[SeededUser]
    task_ids: dict[str, list[str]]
    seconds: float
    rows: int


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_options(argv)
    wrk_path()  # fail before creating anything
    venv_bin = Path(sys.executable).parent
    if not (venv_bin / "todo-api").exists():
        raise SystemExit(f"bench: {venv_bin / 'todo-api'} not found; run `make install` first")
    started = datetime.now(UTC)
    name = database.fresh_database_name()
    url = database.database_url(options.admin_url, name)
    env = {
        "DATABASE_URL": url,
        "BETTER_AUTH_SECRET": BENCH_SECRET,
        "LOG_LEVEL": "warning",
        "LOG_FORMAT": "json",
        "AUTO_MIGRATE": "false",
        "DB_POOL_SIZE": str(options.pool_size),
        "DB_MAX_OVERFLOW": str(options.max_overflow),
        # The limiter on, as in production (headers, leases), but never refusing: wrk's users
        # send thousands of requests a minute each, which is the load, not abuse.
        "RATE_LIMIT_PER_MINUTE": "1000000000",
    }
    print(f"bench: creating database {name}", flush=True)
    asyncio.run(database.create_database(options.admin_url, name))
    try:
        _run(options, venv_bin, url, env, started)
    finally:
        if options.keep_db:
            print(f"bench: kept database {name} ({url})", flush=True)
        else:
            asyncio.run(database.drop_database(options.admin_url, name))
            print(f"bench: dropped database {name}", flush=True)


def _run(
    options: Options, venv_bin: Path, url: str, env: dict[str, str], started: datetime
) -> None:
    database.migrate(venv_bin / "todo-api", env)
    factory = TaskFactory(options.seed)
    seeded = asyncio.run(_seed(url, options, factory))
    print(f"bench: seeded {seeded.rows:,} tasks in {seeded.seconds:.1f} s", flush=True)
    postgres = asyncio.run(database.server_version(url))
    the_report = report.Report(
        title=f"Todo API benchmark, {started:%Y-%m-%d %H:%M} UTC",
        header=[
            *report.machine_info(postgres, wrk_version(), REPO),
            ("Command", _command_line()),
            ("Settings", _settings_line(options)),
        ],
        scaling_connections=options.scaling_connections,
    )
    floor_scenarios = [name for name in options.scenarios if name in FLOOR_SCENARIOS]
    with tempfile.TemporaryDirectory(prefix="todo-bench-") as work_dir:
        work = Path(work_dir)
        with (
            servers.all_running(_launches(venv_bin, options, floor_scenarios), env, work) as up,
            httpx.Client(timeout=HTTP_TIMEOUT_SECONDS) as client,
        ):
            print("bench: " + ", ".join(f"{s.name} at {s.url}" for s in up.values()), flush=True)
            api, base, floor = up["api"], up["baseline"], up.get("fastapi-floor")
            callers = _callers(client, api.url, seeded, options)
            findings = parity.compare(client, api.url, base.url, callers[0])
            if floor:
                findings += parity.compare_floor(
                    client, floor.url, base.url, callers[0], floor_scenarios
                )
            for finding in findings:
                print(f"bench: parity: {finding}", flush=True)
                the_report.notes.append(f"Parity check, {finding}.")
            the_report.cells = _scenarios(api, base, floor, callers, options, factory, work)
            if not options.skip_scaling:
                the_report.scaling = _scaling(client, api, seeded.scaling, options, factory, work)
        the_report.notes += _server_log_notes(work, list(up))
    the_report.header.append(("Load average after the run", report.loadavg()))
    the_report.header.append(("Seeding", _seeding_line(seeded)))
    _write(the_report, options, started)


async def _seed(url: str, options: Options, factory: TaskFactory) -> Seeded:
    started = time.monotonic()
    scaling_sizes = [] if options.skip_scaling else list(options.scaling_sizes)
    counts = [options.tasks_per_user] * options.users + scaling_sizes
    connection = await asyncpg.connect(url)
    try:
        users = await seed_users(connection, factory, counts)
        # Hint bits and visibility map set, statistics fresh: a database in steady state.
        await connection.execute("VACUUM (ANALYZE) users, tasks, tags, task_tags")
        callers = users[: options.users]
        ids = await task_ids_by_user(connection, [user.id for user in callers])
    finally:
        await connection.close()
    sampled = {
        user_id: factory.sample(sorted(task_ids), TASKS_SAMPLED_PER_USER)
        for user_id, task_ids in ids.items()
    }
    return Seeded(
        callers=callers,
        scaling=users[options.users :],
        task_ids=sampled,
        seconds=time.monotonic() - started,
        rows=sum(counts),
    )


def _callers(client: httpx.Client, api_url: str, seeded: Seeded, options: Options) -> list[Caller]:
    """A token per user, a sample of their task ids, and a deep cursor got from the API."""
    print("bench: walking each user's listing for a deep cursor", flush=True)
    callers = []
    for user in seeded.callers:
        token = sign_token(BENCH_SECRET, user.id)
        cursor = None
        if "list-deep" in options.scenarios:
            cursor = cursor_after(client, api_url, token, deep_position(user.task_count))
        callers.append(Caller(user, token, seeded.task_ids[user.id], cursor))
    return callers


def _launches(venv_bin: Path, options: Options, floor_scenarios: list[str]) -> list[servers.Launch]:
    """The API and the baseline; the FastAPI floor too when a scenario it serves will run."""
    api_port = servers.free_port()
    launches = [
        servers.Launch("api", servers.api_command(venv_bin, api_port, options.workers), api_port)
    ]
    for name, app in ASYNCPG_APPS.items():
        if name == "fastapi-floor" and not floor_scenarios:
            continue
        port = servers.free_port()
        command = servers.uvicorn_command(venv_bin, REPO, app, port, options.workers)
        launches.append(servers.Launch(name, command, port))
    return launches


class Handover:
    """Lets one asyncpg server's connections close before the other's turn (HANDOVER_SECONDS)."""

    def __init__(self) -> None:
        self._last: tuple[str, float] | None = None

    def wait_for_turn(self, server: servers.Server) -> None:
        if server.name in ASYNCPG_APPS and self._last and self._last[0] != server.name:
            time.sleep(max(0.0, self._last[1] + HANDOVER_SECONDS - time.monotonic()))

    def done(self, server: servers.Server) -> None:
        if server.name in ASYNCPG_APPS:
            self._last = (server.name, time.monotonic())


def _scenarios(
    api: servers.Server,
    base: servers.Server,
    floor: servers.Server | None,
    callers: list[Caller],
    options: Options,
    factory: TaskFactory,
    work: Path,
) -> list[report.Cell]:
    """Every scenario at every connection count: the API, then the baseline, then for the
    floor's scenarios the FastAPI floor, back to back."""
    cells = []
    handover = Handover()

    def measure(server: servers.Server, path: Path, connections: int, label: str) -> LoadResult:
        handover.wait_for_turn(server)
        result = _measure(server, path, connections, options, label)
        handover.done(server)
        return result

    for scenario in options.scenarios:
        requests = scenario_requests(scenario, callers, factory)
        path = write_requests(work / f"{scenario}.tsv", requests, factory)
        with_floor = floor if scenario in FLOOR_SCENARIOS else None
        for connections in options.connections:
            api_result = measure(api, path, connections, scenario)
            base_result = measure(base, path, connections, scenario)
            floor_result = measure(with_floor, path, connections, scenario) if with_floor else None
            cell = report.Cell(scenario, connections, api_result, base_result, floor_result)
            cells.append(cell)
            print(f"{'':8}{_ratios_line(cell)}", flush=True)
    return cells


def _ratios_line(cell: report.Cell) -> str:
    def pair(result: LoadResult, against: LoadResult) -> str:
        rps, p99 = report.rps_ratio(result, against), report.p99_ratio(result, against)
        return f"req/s {report.ratio(rps)}, p99 {report.ratio(p99)}"

    line = f"API/baseline: {pair(cell.api, cell.baseline)}"
    if cell.floor:
        line += (
            f"; floor/baseline: {pair(cell.floor, cell.baseline)}"
            f"; API/floor: {pair(cell.api, cell.floor)}"
        )
    return line


def _measure(
    server: servers.Server, path: Path, connections: int, options: Options, label: str
) -> LoadResult:
    if options.warmup:
        run_wrk(server.url, path, connections, options.warmup, options.wrk_timeout)
    result = run_wrk(server.url, path, connections, options.duration, options.wrk_timeout)
    problems = result.non2xx + result.socket_errors
    print(
        f"  {label:<14} c={connections:<4} {server.name:<13} {result.rps:9,.0f} req/s  "
        f"p50 {result.p50_ms:7.1f}  p90 {result.p90_ms:7.1f}  p99 {result.p99_ms:7.1f} ms"
        + (
            f"  non-2xx {result.non2xx} {result.statuses} socket errors {result.socket_errors}"
            if problems
            else ""
        ),
        flush=True,
    )
    return result


def _scaling(
    client: httpx.Client,
    api: servers.Server,
    users: list[SeededUser],
    options: Options,
    factory: TaskFactory,
    work: Path,
) -> list[report.ScalingPoint]:
    print(f"bench: scaling run, {options.scaling_connections} connections", flush=True)
    points = []
    for user in users:
        token = sign_token(BENCH_SECRET, user.id)
        after = deep_position(user.task_count)
        cursor = cursor_after(client, api.url, token, after)
        first_file = write_requests(
            work / f"scale-{user.task_count}-first.tsv",
            [Request("GET", "/api/tasks", token)],
            factory,
        )
        deep_file = write_requests(
            work / f"scale-{user.task_count}-deep.tsv",
            [Request("GET", f"/api/tasks?cursor={cursor}", token)],
            factory,
        )
        label = f"{user.task_count:,} tasks"
        first = _measure(api, first_file, options.scaling_connections, options, label + " 1st")
        deep = _measure(api, deep_file, options.scaling_connections, options, label + " deep")
        points.append(report.ScalingPoint(user.task_count, after, first, deep))
    return points


def _server_log_notes(work: Path, names: list[str]) -> list[str]:
    notes = []
    for name in names:
        lines = [line for line in servers.tail(work / f"{name}.log", 100_000).splitlines() if line]
        if not lines:
            notes.append(f"The {name} server logged nothing at warning level or above.")
            continue
        distinct = list(dict.fromkeys(line[:300] for line in lines))
        shown = "; ".join(f"`{line}`" for line in distinct[:5])
        notes.append(
            f"The {name} server logged {len(lines)} lines ({len(distinct)} distinct): {shown}"
        )
    return notes


def _command_line() -> str:
    settings = sorted((key, value) for key, value in os.environ.items() if key.startswith("BENCH_"))
    env = [f"{key}={shlex.quote(value)}" for key, value in settings]
    command = shlex.join([".venv/bin/python", "-m", "bench", *sys.argv[1:]])
    via = " (via `make bench`)" if "MAKELEVEL" in os.environ else ""
    return f"`{' '.join([*env, command])}`{via}"


def _settings_line(options: Options) -> str:
    return (
        f"{options.users} users with {options.tasks_per_user} tasks each; "
        f"{options.duration} s per run after {options.warmup} s warm-up; "
        f"connections {','.join(map(str, options.connections))}; "
        f"wrk threads min(2, connections), time-out {options.wrk_timeout} s; every server "
        f"{options.workers} workers, database pool {options.pool_size} + "
        f"{options.max_overflow} overflow per worker"
        + (
            " (the API closes overflow connections on return, the asyncpg servers keep them "
            "while busy)"
            if options.max_overflow
            else ""
        )
        + (
            ""
            if options.skip_scaling
            else f"; scaling sizes {','.join(map(str, options.scaling_sizes))} at "
            f"{options.scaling_connections} connections"
        )
    )


def _seeding_line(seeded: Seeded) -> str:
    return f"{seeded.rows:,} tasks with COPY, then VACUUM ANALYZE, in {seeded.seconds:.1f} s"


def _write(the_report: report.Report, options: Options, started: datetime) -> None:
    results = options.results_dir
    results.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    plot_name = None
    if the_report.scaling:
        plot_name = f"{stamp}-scaling.png"
        report.plot_scaling(the_report.scaling, results / plot_name, options.scaling_connections)
        shutil.copyfile(results / plot_name, results / "latest-scaling.png")
    text = report.render(the_report, plot_name)
    (results / f"{stamp}.md").write_text(text)
    latest = text.replace(f"]({plot_name})", "](latest-scaling.png)") if plot_name else text
    (results / "latest.md").write_text(latest)
    print("\n" + text, flush=True)
    print(f"bench: wrote {results / f'{stamp}.md'} and {results / 'latest.md'}", flush=True)


if __name__ == "__main__":
    main()
