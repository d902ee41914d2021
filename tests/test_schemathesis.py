"""Schemathesis against a real `todo-api serve`, driven by the app's own OpenAPI document:
every check, positive and negative data, all four phases including the stateful one (create,
then read, change, toggle and delete what was created). Zero failures allowed: no 5xx, every
answer conforms to the document, schema-valid input is accepted and invalid input refused."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import issue_token, running_server, server_environment

pytestmark = [pytest.mark.slow, pytest.mark.fuzz]

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
CONFIG = Path(__file__).with_name("schemathesis.toml")
# Examples per operation and phase: the whole run stays around a minute per database here.
MAX_EXAMPLES = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "60")
RUN_TIMEOUT_SECONDS = 600


def test_the_api_keeps_its_openapi_contract(fresh_database_url: str, tmp_path: Path) -> None:
    env = server_environment(
        fresh_database_url,
        tmp_path / "state",
        LOG_LEVEL="warning",
        # Schemathesis reads a response to its end: each event stream it opens ends at once.
        EVENTS_MAX_STREAM_SECONDS="0.2",
    )
    with running_server(["--workers", "1"], cwd=tmp_path, env=env) as server:
        token = issue_token("--sub", "schemathesis-user", cwd=tmp_path, env=env)
        result = subprocess.run(
            [
                SCHEMATHESIS,
                "--config-file",
                str(CONFIG),
                "run",
                f"{server.base_url}/openapi.json",
                "--header",
                f"Authorization: Bearer {token}",
                "--checks",
                "all",
                "--mode",
                "all",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-examples",
                MAX_EXAMPLES,
                "--seed",
                os.environ.get("SCHEMATHESIS_SEED", "20261121"),
                "--workers",
                "1",
                "--request-timeout",
                "10",
                "--report",
                "junit",
                "--report-dir",
                str(tmp_path / "report"),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_SECONDS,
            check=False,
        )
        server_log = server.stderr()
    print(result.stdout[-4000:])
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-4000:]
    assert "Traceback" not in server_log, server_log[-8000:]
