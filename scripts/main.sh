#!/usr/bin/env bash
# The main job: install what is needed (scripts/setup.sh), then `hwsim demo` on the bundled
# pretrained QAT ResNet20s: emulate, compare with PyTorch, simulate on MAC arrays, sweep widths.
# Uses CIFAR-10 when CIFAR10_DIR (or --data DIR) points at it; needs neither a dataset nor a network.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/hwsim demo "$@"
