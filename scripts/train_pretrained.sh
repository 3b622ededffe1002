#!/usr/bin/env bash
# Trains, exports and packs the bundled models of hwsim/pretrained/bundles/, then refreshes the
# table of docs/results.md: the recipe that produced every row there.
#
#   CIFAR10_DIR=/path/to/cifar-10-batches-py scripts/train_pretrained.sh
#   CIFAR10_DIR=... FLOAT_EPOCHS=200 QAT_EPOCHS=60 scripts/train_pretrained.sh   # full CIFAR-10, GPU
#
# Environment (defaults are the bundled models' recipe: about 45 minutes on 2 CPU cores):
#   CIFAR10_DIR   the CIFAR-10 python batches directory (required)
#   RUNS          where runs and exported bundles go (runs/pretrained)
#   FLOAT_EPOCHS  float pre-training epochs, lr 0.1 cosine (30)
#   QAT_EPOCHS    epochs of each QAT fine-tune from the float model, cosine (8); lr 0.01, but
#                 0.1 for xnor (its sign activations move far from the float ReLUs: at 0.01 it
#                 reached 23.6 % here, at 0.1 30.8 %)
#   CONFIGS       the configs/quant/<name>.yaml to fine-tune (the eleven bundled ones)
#   PACK          1: copy each bundle and checkpoint into hwsim/pretrained/bundles/ and rewrite
#                 docs/results.md's table; 0: leave the package alone (1)
# A run directory that already holds its checkpoint.pt is resumed, not restarted. Update
# hwsim/pretrained/bundles/MANIFEST.yaml (top1_pytorch, commands) when a recipe changes.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${CIFAR10_DIR:?set CIFAR10_DIR to a cifar-10-batches-py directory}"
export CIFAR10_DIR
RUNS=${RUNS:-runs/pretrained}
FLOAT_EPOCHS=${FLOAT_EPOCHS:-30}
QAT_EPOCHS=${QAT_EPOCHS:-8}
CONFIGS=${CONFIGS:-"dorefa_a8w8 dorefa_a4w4 dorefa_a2w2 dorefa_a1w1 pact_a4w4 xnor ternary lsq_a4w4 lsq_a2w2 mixed_cfg1"}
PACK=${PACK:-1}
PY=.venv/bin/python
QAT=.venv/bin/qat

qat_lr() {  # the fine-tune's learning rate for config $1
  case $1 in
    xnor) echo 0.1 ;;
    *) echo 0.01 ;;
  esac
}

train() {  # train OUT "START_ARGS" ARGS...: start the run in OUT, or resume it (resume takes no START_ARGS)
  local out=$1 start=$2
  shift 2
  if [[ -f $out/checkpoint.pt ]]; then
    "$QAT" train --out "$out" --resume "$@"
  else
    # shellcheck disable=SC2086  # START_ARGS is a list of words
    "$QAT" train --out "$out" $start "$@"
  fi
}

train "$RUNS/float" "" --model resnet20 --epochs "$FLOAT_EPOCHS" --lr 0.1 --schedule cosine --batch-size 128 --seed 0
for cfg in $CONFIGS; do
  train "$RUNS/$cfg" "--quant configs/quant/$cfg.yaml --init $RUNS/float/best.pt" \
    --model resnet20 --epochs "$QAT_EPOCHS" --lr "$(qat_lr "$cfg")" --schedule cosine --seed 0
  "$QAT" export "$RUNS/$cfg/best.pt" --out "$RUNS/$cfg.bundle"
  if [[ $PACK == 1 ]]; then
    "$PY" -m hwsim.pretrained.pack "$RUNS/$cfg.bundle" "$cfg" --checkpoint "$RUNS/$cfg/best.pt"
  fi
done
if [[ $PACK == 1 ]]; then
  cp "$RUNS/float/best.pt" hwsim/pretrained/bundles/float_resnet20.pt
  "$PY" -m hwsim.pretrained.results --write docs/results.md
fi
