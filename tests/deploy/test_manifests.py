"""The deployment files, checked without a cluster or a container engine (SPEC §13): the
Kubernetes manifests as kustomize renders them, validated against Kubernetes' own JSON schemas
and read for what the issue asks of them (probes on routes the app serves, non-root pods on a
read-only root, selectors that match, migrations in the Job only); compose.yaml; and the
Containerfile's text. tests/deploy/test_container.py builds and runs the image for real."""

import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from starlette.routing import Match

from tests.conftest import (
    IN_CI,
    SECRET,
    SERVE_ENV_NAMES,
    TODO_API,
    running,
    settings_env_names,
)
from todo_api.app import create_app
from todo_api.cli import GRACEFUL_SHUTDOWN_SECONDS
from todo_api.config import Settings

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "deploy" / "kubernetes"
COMPOSE = REPO / "compose.yaml"
CONTAINERFILE = REPO / "Containerfile"
# The oldest Kubernetes release the manifests are written for (autoscaling/v2, policy/v1,
# seccompProfile, startupProbe are all older), and the newest whose schemas the package ships.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())
KINDS = {
    "ConfigMap",
    "Secret",
    "Job",
    "Deployment",
    "Service",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
}
KNOWN_ENV_NAMES = settings_env_names() | SERVE_ENV_NAMES
Document = dict[str, Any]
# The one writable place in a container (a tmpfs or an emptyDir): DATA_DIR, several workers'
# metrics.
TMP = "/tmp"  # noqa: S108


# ---- rendering ------------------------------------------------------------------------------


def _load_all(text: str) -> list[Document]:
    return [document for document in yaml.safe_load_all(text) if document]


def _render_without_kubectl() -> list[Document]:
    """What `kubectl kustomize` makes of this kustomization, for the two transformations it
    uses (labels on metadata and pod templates, the image name): the files as listed."""
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert set(kustomization) <= {"apiVersion", "kind", "resources", "labels", "images"}, (
        "the fallback renderer does not know every field of kustomization.yaml; extend it"
    )
    documents = [
        document
        for resource in kustomization["resources"]
        for document in _load_all((KUBERNETES / resource).read_text())
    ]
    images = {image["name"]: image for image in kustomization.get("images", [])}
    for document in documents:
        for rule in kustomization.get("labels", []):
            assert not rule.get("includeSelectors"), "the fallback does not rewrite selectors"
            document["metadata"].setdefault("labels", {}).update(rule["pairs"])
            template = document.get("spec", {}).get("template")
            if template is not None and rule.get("includeTemplates"):
                template["metadata"].setdefault("labels", {}).update(rule["pairs"])
        for pod in _pod_specs(document):
            for container in pod["containers"]:
                image = images.get(container["image"])
                if image:
                    container["image"] = f"{image['newName']}:{image['newTag']}"
    return documents


@pytest.fixture(scope="module")
def documents() -> list[Document]:
    """Every object of `kubectl kustomize deploy/kubernetes`; without kubectl, the files that
    kustomization.yaml lists, transformed alike."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return _render_without_kubectl()
    result = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return _load_all(result.stdout)


def _one(documents: list[Document], kind: str) -> Document:
    found = [document for document in documents if document["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _pod_specs(document: Document) -> Iterator[Document]:
    template = document.get("spec", {}).get("template")
    if template is not None:
        yield template["spec"]


def _env(container: Document) -> dict[str, Document]:
    return {variable["name"]: variable for variable in container.get("env", [])}


# ---- Kubernetes -----------------------------------------------------------------------------


def test_the_kustomization_renders_every_manifest_once(documents: list[Document]) -> None:
    assert sorted(document["kind"] for document in documents) == sorted(KINDS)
    listed = set(yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"])
    on_disk = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk, "a manifest is missing from kustomization.yaml, or vice versa"
    for document in documents:
        labels = document["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "todo-api", document["kind"]
        assert labels["app.kubernetes.io/part-of"] == "todo-api", document["kind"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid_for_kubernetes(documents: list[Document], version: str) -> None:
    """Strict: a misspelt or misplaced field is an error, not something the API drops."""
    for document in documents:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            pytest.fail(f"{document['kind']} invalid for Kubernetes {version} at {where}: {error}")
        except kubernetes_validate.utils.SchemaNotFoundError as error:
            pytest.fail(error.message)


def test_the_validation_catches_a_mistake(documents: list[Document]) -> None:
    """The check above can fail: a field in the wrong place is refused."""
    deployment = json.loads(json.dumps(_one(documents, "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def _unserved(paths: set[str], tmp_path: Path) -> set[str]:
    """Those of `paths` that no route of the app answers with GET (matched the way Starlette's
    router matches a request, against `app.routes`)."""
    app = create_app(_app_settings(tmp_path))

    def served(path: str) -> bool:
        scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}
        return any(route.matches(scope)[0] == Match.FULL for route in app.routes)

    return {path for path in paths if not served(path)}


def _app_settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'probes.db'}",
        better_auth_secret=SECRET,
        data_dir=tmp_path,
        environment="test",
        log_format="json",
    )


def _probe_paths(documents: list[Document]) -> dict[str, str]:
    container = _one(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {
        probe: container[probe]["httpGet"]["path"]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe")
    }


async def test_the_probes_ask_routes_that_the_app_serves(
    documents: list[Document], tmp_path: Path
) -> None:
    paths = _probe_paths(documents)
    assert paths["readinessProbe"] == "/health/ready"
    assert paths["livenessProbe"] == "/health"
    assert not _unserved(set(paths.values()), tmp_path), "not routes of the app"
    assert _unserved({"/health/missing"}, tmp_path) == {"/health/missing"}  # it can fail
    # And they answer 200 on a working app (the readiness one asks the database).
    async with running(_app_settings(tmp_path)) as (_app, client):
        for path in set(paths.values()):
            response = await client.get(path)
            assert response.status_code == 200, (path, response.text)


def test_the_probes_and_the_service_use_the_port_the_server_listens_on(
    documents: list[Document],
) -> None:
    deployment = _one(documents, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert _env(container)["PORT"]["value"] == str(ports["http"])
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in ("http", ports["http"])
    service = _one(documents, "Service")
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]


def _containerfile_user() -> tuple[int, int]:
    users = [args for instruction, args in _instructions() if instruction == "USER"]
    uid, _, gid = users[-1].partition(":")
    return int(uid), int(gid or uid)


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_the_pods_run_as_non_root_on_a_read_only_root(documents: list[Document], kind: str) -> None:
    pod = _one(documents, kind)["spec"]["template"]["spec"]
    assert pod.get("automountServiceAccountToken") is False
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for container in pod["containers"]:
        effective = {**pod["securityContext"], **container["securityContext"]}
        assert effective["runAsNonRoot"] is True
        # Numeric and the image's own user, so runAsNonRoot can be checked and files match.
        assert (effective["runAsUser"], effective["runAsGroup"]) == _containerfile_user()
        assert effective["runAsUser"] != 0
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        # The one writable place: /tmp (DATA_DIR, metrics of several workers), not on the node.
        mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
        assert set(mounts) == {TMP}
        assert "emptyDir" in volumes[mounts[TMP]]
        assert container["resources"]["requests"]["cpu"]
        assert container["resources"]["limits"]["memory"]


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_the_selectors_pick_the_api_pods_and_nothing_else(documents: list[Document]) -> None:
    deployment = _one(documents, "Deployment")
    api_pods = deployment["spec"]["template"]["metadata"]["labels"]
    job_pods = _one(documents, "Job")["spec"]["template"]["metadata"]["labels"]
    assert _matches(deployment["spec"]["selector"]["matchLabels"], api_pods)
    for kind, selector in [
        ("Service", _one(documents, "Service")["spec"]["selector"]),
        ("PodDisruptionBudget", _one(documents, "PodDisruptionBudget")["spec"]["selector"]),
    ]:
        labels = selector.get("matchLabels", selector)
        assert _matches(labels, api_pods), f"the {kind} does not select the API pods"
        assert not _matches(labels, job_pods), f"the {kind} selects the migration Job's pod"
    target = _one(documents, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        deployment["metadata"]["name"],
    )


def _min_available(value: int | str, replicas: int) -> int:
    if isinstance(value, str):
        return math.ceil(int(value.removesuffix("%")) * replicas / 100)
    return value


def test_rollouts_and_drains_keep_the_api_serving(documents: list[Document]) -> None:
    deployment = _one(documents, "Deployment")
    hpa = _one(documents, "HorizontalPodAutoscaler")["spec"]
    pdb = _one(documents, "PodDisruptionBudget")["spec"]
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert rolling["maxUnavailable"] == 0
    assert rolling["maxSurge"] not in (0, "0%")
    # The HPA owns the replica count; a `replicas` in the manifest would reset it on apply.
    assert "replicas" not in deployment["spec"]
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
    # At every size the HPA may choose, a drain keeps some pods and may still evict one.
    for replicas in range(hpa["minReplicas"], hpa["maxReplicas"] + 1):
        kept = _min_available(pdb["minAvailable"], replicas)
        assert 1 <= kept < replicas, (replicas, kept)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    pause = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > GRACEFUL_SHUTDOWN_SECONDS + int(pause[1])


def test_migrations_run_in_the_job_and_not_in_the_pods(documents: list[Document]) -> None:
    job = _one(documents, "Job")["spec"]
    container = job["template"]["spec"]["containers"][0]
    assert container["command"] == ["todo-api", "migrate"]
    assert job["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")
    assert _env(container)["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == (
        "DIRECT_DATABASE_URL"
    )
    api = _one(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert _env(api)["AUTO_MIGRATE"]["value"] == "false"
    assert "command" not in api, "the API pods run the image's own CMD (todo-api serve)"
    assert (
        _one(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
        == container["image"]
    )


def test_the_configuration_is_what_the_app_reads(
    documents: list[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _one(documents, "ConfigMap")
    secret = _one(documents, "Secret")
    unknown = set(map(str.lower, config["data"])) - KNOWN_ENV_NAMES
    assert not unknown, f"ConfigMap keys the app does not read: {unknown}"
    for kind in ("Deployment", "Job"):
        pod = _one(documents, kind)["spec"]["template"]["spec"]
        for container in pod["containers"]:
            names = {name.lower() for name in _env(container)}
            assert names <= KNOWN_ENV_NAMES, (kind, names - KNOWN_ENV_NAMES)
            assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
            for variable in _env(container).values():
                reference = variable.get("valueFrom", {}).get("secretKeyRef")
                if reference:
                    assert reference["name"] == secret["metadata"]["name"]
                    assert reference["key"] in secret["stringData"], reference

    # The ConfigMap with real secrets is a configuration the app starts with.
    monkeypatch.chdir(REPO / "deploy")  # no .env here
    for name in os.environ:
        if name.lower() in KNOWN_ENV_NAMES:
            monkeypatch.delenv(name)
    for name, value in config["data"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABASE_URL", secret["stringData"]["DATABASE_URL"])
    monkeypatch.setenv("BETTER_AUTH_SECRET", SECRET)
    settings = Settings()
    assert settings.environment == "production"
    assert settings.auto_migrate is True  # the Deployment's env turns it off, the Job's leaves it

    # The example Secret is marked as such, and its placeholder cannot be used by mistake.
    assert secret["metadata"]["annotations"]["todo-api.example.com/placeholder"] == "true"
    monkeypatch.setenv("BETTER_AUTH_SECRET", secret["stringData"]["BETTER_AUTH_SECRET"])
    with pytest.raises(ValueError, match="BETTER_AUTH_SECRET must be at least"):
        Settings()


# ---- compose.yaml ---------------------------------------------------------------------------


def _interpolate(value: Any) -> Any:
    """Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?error}` with nothing set: the
    defaults, and a stand-in for the required ones."""
    if isinstance(value, dict):
        return {key: _interpolate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, operator, rest = match.group(1), match.group(2), match.group(3) or ""
        if operator == ":-":
            return rest
        if operator == ":?":
            return f"<{name}>"
        return ""

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:-|:\?)([^}]*))?\}", replace, value)


@pytest.fixture(scope="module")
def compose() -> Document:
    loaded: Document = yaml.safe_load(COMPOSE.read_text())
    return {key: value for key, value in _interpolate(loaded).items() if not key.startswith("x-")}


def _host(url: str) -> str:
    match = re.fullmatch(r"postgresql://[^@]+@([^:/]+):\d+/\w+", url)
    assert match, url
    return match.group(1)


def test_compose_runs_two_replicas_behind_pgbouncer_in_transaction_mode(
    compose: Document,
) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "pgbouncer", "migrate", "api"}
    api = services["api"]
    assert api["deploy"]["replicas"] == 2
    environment = api["environment"]
    assert {name.lower() for name in environment} <= KNOWN_ENV_NAMES
    assert _host(environment["DATABASE_URL"]) == "pgbouncer"
    assert environment["DB_STATEMENT_CACHE"] == "false"
    # A transaction pooler cannot LISTEN: live events go to PostgreSQL itself.
    assert _host(environment["EVENTS_DATABASE_URL"]) == "postgres"
    assert environment["AUTO_MIGRATE"] == "false"
    assert environment["BETTER_AUTH_SECRET"] == "<BETTER_AUTH_SECRET>", "must be required"
    assert services["pgbouncer"]["environment"]["POOL_MODE"] == "transaction"
    assert _host(services["pgbouncer"]["environment"]["DATABASE_URL"]) == "postgres"
    # One host port per replica.
    (mapping,) = api["ports"]
    first, last = map(int, re.fullmatch(r"[\d.]+:(\d+)-(\d+):8000", mapping).groups())  # type: ignore[union-attr]
    assert last - first + 1 == api["deploy"]["replicas"]
    assert api["read_only"] is True
    assert api["tmpfs"] == [TMP]


def test_compose_migrates_once_before_the_replicas_start(compose: Document) -> None:
    services = compose["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["todo-api", "migrate"]
    assert _host(migrate["environment"]["DATABASE_URL"]) == "postgres"
    assert migrate["restart"] == "no"
    assert migrate["image"] == services["api"]["image"]
    assert services["api"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }


async def test_compose_waits_on_health_checks_that_exist(compose: Document, tmp_path: Path) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            assert condition["condition"] in ("service_healthy", "service_completed_successfully")
            if condition["condition"] == "service_healthy":
                assert services[dependency]["healthcheck"]["test"][0] == "CMD", dependency
    assert services["api"]["depends_on"]["pgbouncer"] == {"condition": "service_healthy"}
    assert services["pgbouncer"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    # The API's health check asks a route the app serves.
    command = services["api"]["healthcheck"]["test"]
    paths = re.findall(r"http://127\.0\.0\.1:8000(/[\w/]+)", " ".join(command))
    assert paths == ["/health/ready"]
    assert not _unserved(set(paths), tmp_path)


def test_compose_config_renders_with_podman_compose(tmp_path: Path) -> None:
    """compose.yaml as a compose implementation reads it (`podman-compose config`; the dev
    dependencies install it, and it needs podman, which `.ci/run` installs)."""
    if shutil.which("podman") is None:
        if IN_CI:
            pytest.fail("podman is missing under CI=true (.ci/run installs it)")
        pytest.skip("podman is not installed (apt-get install -y podman)")
    result = subprocess.run(
        [str(Path(TODO_API).parent / "podman-compose"), "--file", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "BETTER_AUTH_SECRET": SECRET},
        cwd=tmp_path,
    )
    assert result.returncode == 0, f"podman-compose config: {result.stderr}"
    rendered = yaml.safe_load(result.stdout)
    assert rendered["services"]["api"]["deploy"]["replicas"] == 2
    assert set(rendered["services"]) == set(yaml.safe_load(COMPOSE.read_text())["services"])


# ---- Containerfile --------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    lines = [
        line for line in CONTAINERFILE.read_text().splitlines() if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            instructions.append((instruction.upper(), arguments.strip()))
    return instructions


def test_the_containerfile_builds_on_a_base_image_argument_in_two_stages() -> None:
    instructions = _instructions()
    assert instructions[0][0] == "ARG"
    name, _, default = instructions[0][1].partition("=")
    assert name == "BASE_IMAGE"
    assert default == "docker.io/library/python:3.11-slim"
    stages = [arguments for instruction, arguments in instructions if instruction == "FROM"]
    assert stages == ["${BASE_IMAGE} AS builder", "${BASE_IMAGE}"]
    copies = [arguments for instruction, arguments in instructions if instruction == "COPY"]
    assert "--from=builder /opt/venv /opt/venv" in copies
    runs = " ".join(arguments for instruction, arguments in instructions if instruction == "RUN")
    # A Debian base has `python3` and no `python`; pinned by the lock file.
    assert "python3 -m venv" in runs
    assert not re.search(r"(^|[\s;&|])python\s", runs)
    assert "--constraint requirements.lock" in runs


def test_the_containerfile_runs_the_server_as_a_numeric_non_root_user() -> None:
    instructions = _instructions()
    runtime = instructions[
        max(index for index, (instruction, _) in enumerate(instructions) if instruction == "FROM") :
    ]
    users = [arguments for instruction, arguments in runtime if instruction == "USER"]
    assert len(users) == 1
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[0]), "numeric uid:gid, for runAsNonRoot"
    commands = dict(runtime)
    # Exec form: no shell between the container's stop signal and the server.
    assert json.loads(commands["CMD"]) == ["todo-api", "serve", "--host", "0.0.0.0"]  # noqa: S104
    assert "ENTRYPOINT" not in commands
    assert commands.get("STOPSIGNAL", "SIGTERM") == "SIGTERM"
    environment = dict(re.findall(r"(\w+)=(\S+)", commands["ENV"]))
    assert environment["PORT"] == "8000"
    assert environment["DATA_DIR"].startswith(f"{TMP}/")
    assert {name.lower() for name in environment} - {
        "path",
        "pythonunbuffered",
        "pythondontwritebytecode",
    } <= (KNOWN_ENV_NAMES)
    assert commands["EXPOSE"] == environment["PORT"]
    options, _, health = commands["HEALTHCHECK"].partition("CMD ")
    assert "--interval=" in options
    probe = json.loads(health)
    assert probe[0] == "python3"  # no curl in slim images
    assert re.search(r"'http://127\.0\.0\.1:%s/health'", probe[-1])


def test_the_build_context_holds_only_what_the_containerfile_copies() -> None:
    """An allow-list: no .env (secrets), .git or venv reaches the builder; Podman reads
    .containerignore and Docker .dockerignore, so both say the same."""
    ignore = (REPO / ".containerignore").read_text()
    assert (REPO / ".dockerignore").read_text() == ignore
    rules = [line for line in ignore.splitlines() if line and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = set()
    for instruction, arguments in _instructions():
        if instruction == "COPY" and not arguments.startswith("--from"):
            copied.update(arguments.split()[:-1])
    assert copied == allowed
    assert all((REPO / path).exists() for path in copied)


def test_the_fallback_renders_what_kubectl_renders(documents: list[Document]) -> None:
    """Where kubectl is missing the files are read and transformed here instead; where it is
    there, both must agree, so that the checks above mean the same either way."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the manifests were rendered without it")

    def key(document: Document) -> str:
        return f"{document['kind']}/{document['metadata']['name']}"

    assert sorted(_render_without_kubectl(), key=key) == sorted(documents, key=key)
