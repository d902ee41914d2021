"""`todo-api serve | migrate | token | openapi`."""

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from contextlib import suppress
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from pydantic import ValidationError

from todo_api.config import Settings, announce_generated_secret

if TYPE_CHECKING:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

logger = logging.getLogger(__name__)

APP = "todo_api.main:create_app_from_environment"
# On SIGTERM each worker stops accepting, then waits this long for requests in flight.
GRACEFUL_SHUTDOWN_SECONDS = 30
# File descriptors a worker holds besides its connections: the database pool's are counted
# apart; this covers the listening socket, logs, metrics files and the like, with room to spare.
OTHER_OPEN_FILES = 64


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
        raise SystemExit(f"todo-api: configuration error: {problems}") from None


async def _migrate(settings: Settings) -> None:
    from sqlalchemy.exc import DBAPIError

    from todo_api.db import create_engine
    from todo_api.migrations import upgrade_to_head

    engine = create_engine(settings)
    try:
        await upgrade_to_head(engine)
    except (DBAPIError, OSError) as exc:
        where = engine.url.render_as_string(hide_password=True)
        reason = getattr(exc, "orig", None) or exc
        raise SystemExit(f"todo-api: cannot migrate the database at {where}: {reason}") from None
    finally:
        await engine.dispose()


def serve(args: argparse.Namespace) -> None:
    from todo_api.observability import configure_logging

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    signal.signal(signal.SIGTERM, _exit_cleanly)
    if settings.auto_migrate:
        # Migrate once here, not in each worker; the workers inherit AUTO_MIGRATE=false.
        asyncio.run(_migrate(settings))
        os.environ["AUTO_MIGRATE"] = "false"
    if settings.secret_generated and settings.signing_secret:
        # Workers must sign and verify with the secret this process generated. They then see
        # it as configured and stay quiet about it, so the token hint is logged here, once.
        os.environ["BETTER_AUTH_SECRET"] = settings.signing_secret
        announce_generated_secret(settings)
    workers = None if args.reload else args.workers
    metrics_folder = _share_metrics_between_workers() if workers and workers > 1 else None
    _raise_open_file_limit(settings)
    try:
        _run_server(args, settings, workers)
    finally:
        if metrics_folder is not None:
            shutil.rmtree(metrics_folder, ignore_errors=True)


def _share_metrics_between_workers() -> str | None:
    """Workers add up their metrics through files in one folder (prometheus-client's
    multiprocess mode): a temporary one, or the operator's, emptied of an earlier run's files.
    Returns the folder to remove at exit, if this process made it."""
    from todo_api.metrics import MULTIPROCESS_DIR_VARIABLE

    configured = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    if configured:
        for stale in Path(configured).glob("*.db"):
            stale.unlink()
        return None
    folder = tempfile.mkdtemp(prefix="todo-api-metrics-")
    os.environ[MULTIPROCESS_DIR_VARIABLE] = folder
    return folder


def _raise_open_file_limit(settings: Settings) -> None:
    """Every connection holds a file descriptor: lift the soft limit to the hard one (workers
    inherit it), and warn when a worker's connection ceiling would not fit under it. The limit
    is per process, so it is one worker's connections that must fit, whatever their number."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    needed = (
        settings.server_max_concurrency
        + settings.db_pool_size
        + settings.db_max_overflow
        + OTHER_OPEN_FILES
    )
    if soft != resource.RLIM_INFINITY and needed > soft:
        logger.warning(
            "SERVER_MAX_CONCURRENCY=%d does not fit in the open-file limit of %d per process "
            "(a worker may need %d): past it, connections go unaccepted instead of getting 503. "
            "Lower SERVER_MAX_CONCURRENCY or raise the limit (ulimit -n, LimitNOFILE=).",
            settings.server_max_concurrency,
            soft,
            needed,
        )


def _run_server(args: argparse.Namespace, settings: Settings, workers: int | None) -> None:
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import ChangeReload

    from todo_api.server import ServerConfig

    config = ServerConfig(
        APP,
        settings,
        factory=True,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        reload=args.reload,
        workers=workers,
    )
    # What `uvicorn.run` does, with this configuration instead of one built from keywords.
    server = uvicorn.Server(config)
    with suppress(KeyboardInterrupt):
        if config.should_reload:
            ChangeReload(config, target=server.run, sockets=[config.bind_socket()]).run()
        elif config.workers > 1:
            _supervisor(config).run()
        else:
            server.run()
    if not server.started and not config.should_reload and config.workers == 1:
        raise SystemExit(STARTUP_FAILURE)


def _exit_cleanly(_signal: int, _frame: FrameType | None) -> None:
    """SIGTERM is how a service manager asks for a stop: once uvicorn has shut down gracefully
    it raises the signal again, and this makes that an exit with status 0, not a kill."""
    raise SystemExit(0)


def _supervisor(config: "uvicorn.Config") -> "Multiprocess":
    """uvicorn's worker supervisor, except that on SIGTERM it closes its own copy of the
    listening socket before stopping the workers. Otherwise, while they finish the requests in
    flight, the kernel would still queue new connections on it that nobody ever accepts: the
    client hangs until the supervisor exits, instead of being refused at once (and retrying
    another instance)."""
    from uvicorn.supervisors import Multiprocess

    class StopAcceptingFirst(Multiprocess):
        def terminate_all(self) -> None:
            for sock in self.sockets:
                sock.close()
            super().terminate_all()

    return StopAcceptingFirst(config, sockets=[config.bind_socket()])


def migrate(_args: argparse.Namespace) -> None:
    asyncio.run(_migrate(_settings()))
    print("database schema is up to date")


def token(args: argparse.Namespace) -> None:
    from todo_api.auth.tokens import issue_token

    try:
        token = issue_token(
            _settings(), args.sub, email=args.email, name=args.name, ttl_seconds=args.ttl
        )
    except ValueError as exc:
        raise SystemExit(f"todo-api: {exc}") from None
    print(token)


def openapi(_args: argparse.Namespace) -> None:
    from todo_api.app import create_app

    settings = _settings().model_copy(update={"auto_migrate": False})
    print(json.dumps(create_app(settings).openapi(), indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="todo-api", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("serve", help="serve the API over HTTP")
    # In a container the command line is fixed and the environment configures it.
    run.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    run.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    run.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "1")))
    run.add_argument("--reload", action="store_true", help="restart on code changes (development)")
    run.set_defaults(handler=serve)

    commands.add_parser("migrate", help="apply database migrations").set_defaults(handler=migrate)

    tok = commands.add_parser("token", help="print a dev token signed with the configured secret")
    tok.add_argument("--sub", required=True, help="user id (the token's subject)")
    tok.add_argument("--email")
    tok.add_argument("--name")
    tok.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    tok.set_defaults(handler=token)

    commands.add_parser("openapi", help="print the OpenAPI document").set_defaults(handler=openapi)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main(sys.argv[1:])
