# Sourced by scripts/run and scripts/test: makes .venv with Python >= 3.12 and
# installs the project into it, again only when pyproject.toml changes.
# Usage: . scripts/bootstrap.sh [extras]
set -euo pipefail
extras="${1:-}"

find_python() {
    local candidate
    for candidate in python python3.13 python3.12 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

if [ ! -x .venv/bin/python ] ||
    ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
    if ! python_bin=$(find_python); then
        echo "Chorus needs Python 3.12 or newer; none was found on PATH." >&2
        echo "Install one (with pyenv, the .python-version file selects 3.12)." >&2
        exit 1
    fi
    rm -rf .venv
    "$python_bin" -m venv .venv
fi

stamp=".venv/.installed-$({ cat pyproject.toml; cat requirements.lock 2>/dev/null || true; } | sha256sum | cut -c1-16)-${extras:-base}"
if [ ! -f "$stamp" ]; then
    echo "Installing Chorus${extras:+ with [$extras]} into .venv ..."
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    spec="."
    [ -n "$extras" ] && spec=".[$extras]"
    # requirements.lock pins every package to the versions the suite last passed with.
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
        --constraint requirements.lock -e "$spec"
    touch "$stamp"
fi
