"""The image for real (SPEC §13): built from the Containerfile with Debian's podman and run
against PostgreSQL as its users run it, on a read-only root file system.

No image registry is reachable on these machines, so the base image is made here from Debian
packages (`mmdebstrap`, then `podman import`): python3 and its venv module, no `python`, no
system pip, which the Containerfile must handle as well as the official Python slim image.
That base is kept between runs: in podman's store, and as a tarball under
~/.cache/todo-api (XDG_CACHE_HOME), so that a later run, even after the store was emptied,
needs no download. Package downloads in the build may go through a proxy that re-signs TLS:
the host's CA bundle is handed to pip as a build secret (never stored in the image), and a
package index configured for the host's pip is passed on as build arguments.

Podman needs `--runtime runc` here (the default runtime fails) and `--ulimit` values within
the host's limits. Where podman, runc or mmdebstrap are missing or cannot run, the tests are
skipped, except under CI=true, where that is a failure (`.ci/run` installs them).
`pytest -s` prints the image size and the build time; CONTAINER_FIGURES_FILE names a file to
write them to as well (default test-artifacts/container-figures.txt)."""

import asyncio
import hashlib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory

from tests.conftest import IN_CI, SECRET, fetch, throwaway_database
from tests.processes import free_port, log_entries
from todo_api.migrations import alembic_config

pytestmark = [pytest.mark.container, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[2]
PODMAN = ["podman", "--runtime", "runc"]
# What a container may use here: the host's hard limits are lower than podman's defaults.
RUN_OPTIONS = [
    "--network",
    "host",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
]
# The base: Debian's minimal variant with Python and its venv module (no docs, manuals or
# translations). A change here names a new image and tarball, so it is built anew.
SUITE = "bookworm"
BASE_RECIPE = [
    "--variant=minbase",
    "--include=python3,python3-venv,ca-certificates",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-include=/usr/share/locale/locale.alias",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    SUITE,
]
BASE_DIGEST = hashlib.sha256("\n".join(BASE_RECIPE).encode()).hexdigest()[:12]
BASE_IMAGE = f"localhost/todo-api-base:{SUITE}-{BASE_DIGEST}"
# An imported root file system has no configuration at all: give it Debian's usual PATH.
BASE_CHANGES = ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
BUILD_TIMEOUT = 900
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20  # podman's grace period before it would send SIGKILL
# The image's user (Containerfile: USER), checked inside the running container.
IMAGE_UID = 10001


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true makes the container test required)")
    pytest.skip(reason)


def _run(
    command: list[str], *, timeout: float = 120, check: bool = True
) -> "subprocess.CompletedProcess[str]":
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def _cache_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "todo-api"


@dataclass
class Figures:
    """What the lead reports: the base (made or reused), the image's size and build time."""

    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)
        print(f"\n[container] {line}", end="")

    def save(self) -> None:
        path = Path(
            os.environ.get("CONTAINER_FIGURES_FILE")
            or REPO / "test-artifacts" / "container-figures.txt"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(self.lines) + "\n")


@pytest.fixture(scope="module")
def figures() -> Iterator[Figures]:
    started = time.monotonic()
    collected = Figures()
    yield collected
    collected.add(f"container tests took {time.monotonic() - started:.1f} s in all")
    collected.save()


@pytest.fixture(scope="module")
def base_image(figures: Figures) -> str:
    """The Debian base in podman's store: reused, imported from the cached tarball, or made."""
    for tool in ("podman", "runc", "mmdebstrap"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            _unavailable(f"{tool} is not installed (apt-get install podman runc mmdebstrap)")
    if _run([*PODMAN, "image", "exists", BASE_IMAGE], check=False).returncode == 0:
        figures.add(f"base image {BASE_IMAGE}: reused from podman's store")
    else:
        started = time.monotonic()
        tarball = _cache_dir() / f"base-{SUITE}-{BASE_DIGEST}.tar"
        how = "imported from the cached tarball"
        if not tarball.exists():
            tarball.parent.mkdir(parents=True, exist_ok=True)
            partial = tarball.with_suffix(".partial.tar")
            made = _run(["mmdebstrap", *BASE_RECIPE, str(partial)], timeout=600, check=False)
            if made.returncode != 0:
                partial.unlink(missing_ok=True)
                _unavailable(f"mmdebstrap cannot make the base image here:\n{made.stderr[-2000:]}")
            partial.rename(tarball)
            how = "made with mmdebstrap"
        changes = [option for change in BASE_CHANGES for option in ("--change", change)]
        _run([*PODMAN, "import", *changes, str(tarball), BASE_IMAGE], timeout=300)
        figures.add(f"base image {BASE_IMAGE}: {how} in {time.monotonic() - started:.1f} s")
    # Can podman run a container at all here?
    probe = _run(
        [*PODMAN, "run", "--rm", *RUN_OPTIONS, BASE_IMAGE, "python3", "-c", "import venv"],
        check=False,
    )
    if probe.returncode != 0:
        _unavailable(f"podman cannot run containers here:\n{probe.stderr[-2000:]}")
    return BASE_IMAGE


def _ca_bundle() -> Path | None:
    """The host's CA bundle (with any locally added CA, such as a TLS-inspecting proxy's)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (
        os.environ.get("PIP_CERT"),
        os.environ.get("REQUESTS_CA_BUNDLE"),
        os.environ.get("SSL_CERT_FILE"),
        paths.cafile,
        paths.openssl_cafile,
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _pip_index_arguments() -> list[str]:
    """The package index the host's pip uses, if one is configured, as build arguments."""
    listed = _run([sys.executable, "-m", "pip", "config", "list"], check=False).stdout
    configured = dict(re.findall(r"^(?:global|install)\.([\w-]+)='(.*)'$", listed, re.MULTILINE))
    arguments = []
    for option in ("index-url", "extra-index-url", "trusted-host"):
        variable = "PIP_" + option.upper().replace("-", "_")
        value = os.environ.get(variable) or configured.get(option)
        if value:
            arguments += ["--build-arg", f"{variable}={value}"]
    return arguments


@pytest.fixture(scope="module")
def image(base_image: str, figures: Figures) -> Iterator[str]:
    """The Containerfile built on the Debian base; removed afterwards (the layer cache stays,
    so an unchanged dependency set is not downloaded again)."""
    tag = f"localhost/todo-api:test-{uuid.uuid4().hex[:8]}"
    command = [
        *PODMAN,
        "build",
        "--format",
        "docker",  # keeps HEALTHCHECK (the OCI format has no field for it)
        "--pull=never",
        "--build-arg",
        f"BASE_IMAGE={base_image}",
        *_pip_index_arguments(),
        "--tag",
        tag,
        "--file",
        str(REPO / "Containerfile"),
    ]
    bundle = _ca_bundle()
    if bundle is not None:
        command += ["--secret", f"id=ca-bundle,src={bundle}"]
    started = time.monotonic()
    _run([*command, str(REPO)], timeout=BUILD_TIMEOUT)
    seconds = time.monotonic() - started
    size = int(_run([*PODMAN, "image", "inspect", "--format", "{{.Size}}", tag]).stdout)
    base_size = int(_run([*PODMAN, "image", "inspect", "--format", "{{.Size}}", base_image]).stdout)
    figures.add(f"image built in {seconds:.1f} s (layer cache as left by earlier builds)")
    figures.add(
        f"image size {size / 1e6:.0f} MB ({size} bytes; the base alone {base_size / 1e6:.0f} MB)"
    )
    try:
        yield tag
    finally:
        _run([*PODMAN, "rmi", "--force", tag], check=False)


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"todo-api-test-{uuid.uuid4().hex[:8]}"
    yield name
    _run([*PODMAN, "rm", "--force", "--time", "0", name], check=False)


def _environment(**variables: str) -> list[str]:
    return [option for name, value in variables.items() for option in ("--env", f"{name}={value}")]


def _logs(name: str) -> str:
    result = _run([*PODMAN, "logs", name], check=False)
    return result.stdout + result.stderr


def _wait_until_ready(name: str, base_url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        state = _run([*PODMAN, "inspect", "--format", "{{.State.Status}}", name]).stdout.strip()
        if state != "running":
            pytest.fail(f"the container is {state} before answering:\n{_logs(name)}")
        try:
            response = httpx.get(f"{base_url}/health/ready", timeout=2)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        if response.status_code == 200:
            assert response.json() == {"status": "ready", "database": "ok"}
            return
        time.sleep(0.2)
    pytest.fail(f"/health/ready did not answer 200 within {READY_TIMEOUT} s:\n{_logs(name)}")


def test_the_image_serves_tasks_as_a_non_root_user_and_stops_cleanly(
    image: str, postgres_admin_url: str, container_name: str, figures: Figures
) -> None:
    """Migrations at start (AUTO_MIGRATE's default), a read-only root with a tmpfs at /tmp, the
    image's own CLI for a token, and SIGTERM from `podman stop` ending it with 0."""
    inspected = json.loads(_run([*PODMAN, "image", "inspect", image]).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == f"{IMAGE_UID}:{IMAGE_UID}"
    assert config["Cmd"] == ["todo-api", "serve", "--host", "0.0.0.0"]  # noqa: S104
    assert inspected["Healthcheck"]["Test"][0] == "CMD"  # kept by --format docker

    port = free_port()
    with throwaway_database(postgres_admin_url, "todo_api_container") as database_url:
        started = time.monotonic()
        _run(
            [
                *PODMAN,
                "run",
                "--detach",
                "--name",
                container_name,
                *RUN_OPTIONS,
                "--read-only",
                "--tmpfs",
                "/tmp",  # noqa: S108
                *_environment(
                    DATABASE_URL=database_url,
                    BETTER_AUTH_SECRET=SECRET,
                    PORT=str(port),
                    # What fits under the 1024 open files this container gets (cli.py warns).
                    SERVER_MAX_CONCURRENCY="512",
                ),
                image,
            ]
        )
        base_url = f"http://127.0.0.1:{port}"
        _wait_until_ready(container_name, base_url)
        figures.add(
            f"started and ready (migrated a fresh database) in {time.monotonic() - started:.1f} s"
        )

        # The image's HEALTHCHECK, run by podman as a container engine would.
        health = _run([*PODMAN, "healthcheck", "run", container_name], check=False)
        assert health.returncode == 0, health.stdout + health.stderr

        uid = _run([*PODMAN, "exec", container_name, "id", "-u"]).stdout.strip()
        assert uid == str(IMAGE_UID)
        # The root file system is read-only, and the app ran on it all the same.
        written = _run([*PODMAN, "exec", container_name, "touch", "/opt/venv/x"], check=False)
        assert written.returncode != 0
        assert "Read-only file system" in written.stderr

        token = _run(
            [*PODMAN, "exec", container_name, "todo-api", "token", "--sub", "u1"]
        ).stdout.strip()
        assert token.count(".") == 2
        headers = {"Authorization": f"Bearer {token}"}
        created = httpx.post(
            f"{base_url}/api/tasks", json={"title": "From the container"}, headers=headers
        )
        assert created.status_code == 201, created.text
        listed = httpx.get(f"{base_url}/api/tasks", headers=headers)
        assert listed.status_code == 200, listed.text
        assert [task["id"] for task in listed.json()] == [created.json()["id"]]
        stored = asyncio.run(fetch(database_url, "SELECT user_id, title FROM tasks"))
        assert stored == [{"user_id": "u1", "title": "From the container"}]

        stopping = time.monotonic()
        _run([*PODMAN, "stop", "--time", str(STOP_TIMEOUT), container_name], timeout=60)
        stop_seconds = time.monotonic() - stopping
        exit_code = _run(
            [*PODMAN, "inspect", "--format", "{{.State.ExitCode}}", container_name]
        ).stdout.strip()
        logs = _logs(container_name)
        assert exit_code == "0", logs
        # Well before podman's SIGKILL: the server itself ended on SIGTERM.
        assert stop_seconds < STOP_TIMEOUT / 2, stop_seconds
        entries = log_entries(logs)
        messages = [entry["message"] for entry in entries]
        assert "Application shutdown complete." in messages
        assert "Finished server process [1]" in messages  # PID 1: no shell in between
        assert not [entry for entry in entries if entry["level"] in ("error", "critical")]


def test_the_migrate_command_brings_a_fresh_database_to_head(
    image: str, postgres_admin_url: str
) -> None:
    """What the Kubernetes Job and the compose `migrate` service run, on a read-only root."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with throwaway_database(postgres_admin_url, "todo_api_container_migrate") as database_url:
        command = [
            *PODMAN,
            "run",
            "--rm",
            *RUN_OPTIONS,
            "--read-only",
            "--tmpfs",
            "/tmp",  # noqa: S108
            *_environment(DATABASE_URL=database_url, BETTER_AUTH_SECRET=SECRET),
            image,
            "todo-api",
            "migrate",
        ]
        first = _run(command)
        assert first.stdout.strip() == "database schema is up to date"
        revisions = asyncio.run(fetch(database_url, "SELECT version_num FROM alembic_version"))
        assert revisions == [{"version_num": head}]
        again = _run(command)  # a second run at head does nothing, and says so
        assert again.stdout.strip() == "database schema is up to date"
