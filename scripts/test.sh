#!/usr/bin/env bash
# The whole test suite: installs what it needs (scripts/setup.sh --rtl), then lint and pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --rtl
if [[ -z "${CIFAR10_DIR:-}" && -d ../shared/data/cifar-10-batches-py ]]; then
  export CIFAR10_DIR=$(realpath ../shared/data/cifar-10-batches-py)
fi
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -n 2 "$@"
