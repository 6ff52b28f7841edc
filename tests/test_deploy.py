"""The production configuration, checked the way an operator would."""

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent


def production_env(**extra) -> dict:
    env = {key: value for key, value in os.environ.items()
           if key not in {"DATABASE_URL", "REDIS_URL", "DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE"}}
    env.update(CHORUS_PRODUCTION="true", SECRET_KEY=secrets.token_urlsafe(50),
               ALLOWED_HOSTS="chorus.example.org", **extra)
    return env


def manage(*args, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_production_settings_pass_the_deploy_check_at_warning_level():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    env = production_env()
    del env["SECRET_KEY"]
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_malformed_setting_fails_loudly():
    result = manage("check", env=production_env(CHORUS_PUBLISH_INTERVAL_SECONDS="soon"))
    assert result.returncode != 0
    assert "CHORUS_PUBLISH_INTERVAL_SECONDS" in result.stderr


def test_openapi_schema_generates_without_warnings(tmp_path):
    result = manage("spectacular", "--validate", "--fail-on-warn", "--file",
                    str(tmp_path / "schema.yaml"), env=production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "/api/v1/s/{share_token}/reports/" in (tmp_path / "schema.yaml").read_text()


@pytest.mark.parametrize("compose_file", ["docker/compose.yaml"])
def test_compose_file_validates(compose_file):
    binary = shutil.which("docker-compose")
    require(binary is not None, "docker-compose is not installed (apt-get install docker-compose)")
    env = dict(os.environ, SECRET_KEY="x", ALLOWED_HOSTS="x", POSTGRES_PASSWORD="x")
    result = subprocess.run([binary, "-f", compose_file, "config", "--quiet"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    services = subprocess.run([binary, "-f", compose_file, "config", "--services"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=60).stdout.split()
    assert set(services) == {"postgres", "redis", "migrate", "web", "worker", "beat"}
