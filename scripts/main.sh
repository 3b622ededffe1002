#!/usr/bin/env bash
# The main job: install what is needed (scripts/setup.sh), then train a quantized ResNet20 on the default.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/qat train --model resnet20 --quant configs/quant/dorefa_a4w4.yaml --synthetic 512 --epochs 1 --out runs/main "$@"
