"""The import contracts in pyproject.toml, checked as lint-imports checks them in the
test command, and shown to catch the imports they forbid."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--config", str(root / "pyproject.toml")],
                          cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def copy_of_the_code(tmp_path):
    for package in ("server", "surveys", "reports"):
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__", "static", "templates"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_code_keeps_every_import_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("surveys/services.py", "from reports import services as _upward",
     "Intake (surveys) is upstream of analytics"),
    ("surveys/views.py", "from reports.views import dashboard_context as _upward",
     "Intake (surveys) is upstream of analytics"),
    ("reports/scan.py", "from django.db import models as _django",
     "The statistics modules import no Django"),
    ("server/errors.py", "from reports import selectors as _rules",
     "server holds settings and wiring"),
])
def test_an_import_against_the_layout_breaks_its_contract(copy_of_the_code, module, line,
                                                           contract):
    path = copy_of_the_code / module
    path.write_text(path.read_text() + f"\n{line}\n")
    result = lint_imports(copy_of_the_code)
    assert result.returncode != 0
    broken = [row for row in result.stdout.splitlines() if row.endswith("BROKEN")]
    assert any(contract in row for row in broken), result.stdout
