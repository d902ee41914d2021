"""What a benchmark run is told: command-line flags, each with a `BENCH_*` environment default."""

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SCENARIOS = (
    "list-default",
    "list-filtered",
    "list-deep",
    "get-one",
    "create",
    "toggle",
    "mixed",
)
QUICK_DURATION_SECONDS = 3
QUICK_WARMUP_SECONDS = 1
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True, slots=True)
class Options:
    admin_url: str
    users: int
    tasks_per_user: int
    duration: int
    warmup: int
    connections: tuple[int, ...]
    scenarios: tuple[str, ...]
    scaling_sizes: tuple[int, ...]
    scaling_connections: int
    skip_scaling: bool
    quick: bool
    keep_db: bool
    workers: int
    pool_size: int
    max_overflow: int
    wrk_timeout: int
    seed: int
    results_dir: Path


def _env(name: str, default: str) -> str:
    return os.environ.get(f"BENCH_{name}", default)


def _env_flag(name: str) -> bool:
    return _env(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,10,100, got {text!r}") from None
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _scenario_list(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {', '.join(unknown) or '(none)'}; choose from {', '.join(SCENARIOS)}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Load the Todo API, a hand-written asyncpg baseline and (for get-one and "
        "list-default) a bare FastAPI app with wrk, back to back, on a fresh PostgreSQL database; "
        "then measure listing cost against task count.",
    )
    add = parser.add_argument
    add(
        "--admin-url",
        default=_env("ADMIN_URL", DEFAULT_ADMIN_URL),
        help="PostgreSQL server to create the throwaway database on (BENCH_ADMIN_URL)",
    )
    add(
        "--users",
        type=int,
        default=int(_env("USERS", "50")),
        help="seeded users, one token each (BENCH_USERS, default 50)",
    )
    add(
        "--tasks-per-user",
        type=int,
        default=int(_env("TASKS_PER_USER", "200")),
        help="tasks per seeded user (BENCH_TASKS_PER_USER, default 200)",
    )
    add(
        "--duration",
        type=int,
        default=None,
        help="seconds per measured run (BENCH_DURATION, default 10; 3 with --quick)",
    )
    add(
        "--warmup",
        type=int,
        default=None,
        help="unmeasured seconds before each run (BENCH_WARMUP, default 2; 1 with --quick)",
    )
    add(
        "--connections",
        type=_int_list,
        default=_int_list(_env("CONNECTIONS", "1,10,100")),
        help="comma-separated wrk connection counts (BENCH_CONNECTIONS, default 1,10,100)",
    )
    add(
        "--scenarios",
        type=_scenario_list,
        default=_scenario_list(_env("SCENARIOS", ",".join(SCENARIOS))),
        help=f"comma-separated subset of {','.join(SCENARIOS)} (BENCH_SCENARIOS, default all)",
    )
    add(
        "--scaling-sizes",
        type=_int_list,
        default=_int_list(_env("SCALING_SIZES", "100,1000,10000,100000")),
        help="task counts of the scaling users "
        "(BENCH_SCALING_SIZES, default 100,1000,10000,100000)",
    )
    add(
        "--scaling-connections",
        type=int,
        default=int(_env("SCALING_CONNECTIONS", "10")),
        help="wrk connections in the scaling run (BENCH_SCALING_CONNECTIONS, default 10)",
    )
    add(
        "--skip-scaling",
        action="store_true",
        default=_env_flag("SKIP_SCALING"),
        help="skip the scaling run (BENCH_SKIP_SCALING=1)",
    )
    add(
        "--quick",
        action="store_true",
        default=_env_flag("QUICK"),
        help=f"smoke check: {QUICK_DURATION_SECONDS} s runs, {QUICK_WARMUP_SECONDS} s warm-up "
        "(BENCH_QUICK=1)",
    )
    add(
        "--keep-db",
        action="store_true",
        default=_env_flag("KEEP_DB"),
        help="keep the benchmark database instead of dropping it (BENCH_KEEP_DB=1)",
    )
    add(
        "--workers",
        type=int,
        default=int(_env("WORKERS", "2")),
        help="worker processes of every server (BENCH_WORKERS, default 2)",
    )
    add(
        "--pool-size",
        type=int,
        default=int(_env("POOL_SIZE", "20")),
        help="database connections each worker of every server keeps, passed as DB_POOL_SIZE "
        "(BENCH_POOL_SIZE, default 20)",
    )
    add(
        "--max-overflow",
        type=int,
        default=int(_env("MAX_OVERFLOW", "0")),
        help="connections each worker may open beyond them, passed as DB_MAX_OVERFLOW "
        "(BENCH_MAX_OVERFLOW, default 0: the API closes overflow connections on return)",
    )
    add(
        "--wrk-timeout",
        type=int,
        default=int(_env("WRK_TIMEOUT", "2")),
        help="seconds before wrk counts a request as timed out (BENCH_WRK_TIMEOUT, default 2)",
    )
    add(
        "--seed",
        type=int,
        default=int(_env("SEED", "42")),
        help="seed of the generated data (BENCH_SEED, default 42)",
    )
    add(
        "--results-dir",
        type=Path,
        default=Path(_env("RESULTS_DIR", "bench/results")),
        help="where the report goes (BENCH_RESULTS_DIR, default bench/results)",
    )
    return parser


def parse_options(argv: Sequence[str] | None = None) -> Options:
    args = build_parser().parse_args(argv)
    duration = args.duration or int(
        _env("DURATION", str(QUICK_DURATION_SECONDS if args.quick else 10))
    )
    warmup = (
        args.warmup
        if args.warmup is not None
        else int(_env("WARMUP", str(QUICK_WARMUP_SECONDS if args.quick else 2)))
    )
    if args.users < 1 or args.tasks_per_user < 1 or duration < 1 or warmup < 0:
        raise SystemExit("bench: users, tasks per user and duration must be positive")
    if args.pool_size < 1 or args.max_overflow < 0:
        raise SystemExit("bench: the pool size must be positive and the overflow not negative")
    return Options(
        admin_url=args.admin_url,
        users=args.users,
        tasks_per_user=args.tasks_per_user,
        duration=duration,
        warmup=warmup,
        connections=args.connections,
        scenarios=args.scenarios,
        scaling_sizes=tuple(sorted(set(args.scaling_sizes))),
        scaling_connections=args.scaling_connections,
        skip_scaling=args.skip_scaling,
        quick=args.quick,
        keep_db=args.keep_db,
        workers=args.workers,
        pool_size=args.pool_size,
        max_overflow=args.max_overflow,
        wrk_timeout=args.wrk_timeout,
        seed=args.seed,
        results_dir=args.results_dir,
    )
