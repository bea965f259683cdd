#!/usr/bin/env bash
# Create .venv from the hashed lock requirements.txt with uv (uv itself lives in .uv/).
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .uv/bin/uv ]; then
  echo "==> installing uv $UV_VERSION into .uv/"
  "$PYTHON" -m venv .uv
  .uv/bin/pip install --quiet "uv==$UV_VERSION"
fi
if [ ! -x .venv/bin/python ]; then
  .uv/bin/uv venv --quiet --python "$PYTHON" .venv
fi
echo "==> syncing .venv with requirements.txt"
.uv/bin/uv pip sync --quiet --python .venv/bin/python --compile-bytecode --require-hashes requirements.txt
touch .venv/.synced
