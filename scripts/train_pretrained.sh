#!/usr/bin/env bash
# Trains, exports and packs the bundled models of hwsim/pretrained/bundles/, then refreshes the
# table of docs/results.md: the recipe that produced every row there.
#
#   CIFAR10_DIR=/path/to/cifar-10-batches-py scripts/train_pretrained.sh
#   CIFAR10_DIR=... FLOAT_EPOCHS=200 QAT_EPOCHS=60 scripts/train_pretrained.sh   # full CIFAR-10, GPU
#
# Every run holds 10 % of the training images out (qat train --val-fraction, stratified and fixed)
# and selects best.pt on them; the test split is only reported.
#
# Environment (defaults are the bundled models' recipe; about 100 minutes of 2 CPU cores run as two
# lanes of one thread each, OMP_NUM_THREADS=1 and CONFIGS=xnor in one, the others in the other):
#   CIFAR10_DIR   the CIFAR-10 python batches directory (required)
#   RUNS          where runs and exported bundles go (runs/pretrained)
#   FLOAT_EPOCHS  float pre-training epochs, lr 0.1 cosine (30)
#   QAT_EPOCHS    epochs of each QAT fine-tune from the float model, lr 0.01 cosine (8), except:
#                 dorefa_a8w8 and dorefa_a4w4 fine-tune 3x as long (their activations clip at 1,
#                 far inside the float ReLUs' range: after 8 epochs they were still improving);
#                 xnor trains from scratch as onion-rain/MCTS trains it (100 epochs, lr 0.1,
#                 x0.1 at 50 % and 75 %, weight decay 1e-4, batch 100): fine-tuned from the ReLU
#                 float model for 8 epochs it reached 30.8 % top-1
#   XNOR_EPOCHS   xnor's epochs from scratch (100)
#   CONFIGS       the configs/quant/<name>.yaml to train (the ten bundled ones)
#   PACK          1: copy each bundle, checkpoint and metrics.csv into hwsim/pretrained/bundles/ and
#                 rewrite docs/results.md's table; 0: leave the package alone (1)
# A run directory that already holds its checkpoint.pt is resumed, not restarted. The float model
# is trained only when a config fine-tunes from it. Update hwsim/pretrained/bundles/MANIFEST.yaml
# (top1_pytorch, commands) when a recipe changes.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${CIFAR10_DIR:?set CIFAR10_DIR to a cifar-10-batches-py directory}"
export CIFAR10_DIR
RUNS=${RUNS:-runs/pretrained}
FLOAT_EPOCHS=${FLOAT_EPOCHS:-30}
QAT_EPOCHS=${QAT_EPOCHS:-8}
XNOR_EPOCHS=${XNOR_EPOCHS:-100}
CONFIGS=${CONFIGS:-"dorefa_a8w8 dorefa_a4w4 dorefa_a2w2 dorefa_a1w1 pact_a4w4 xnor ternary lsq_a4w4 lsq_a2w2 mixed_cfg1"}
PACK=${PACK:-1}
PY=.venv/bin/python
QAT=.venv/bin/qat

recipe() {  # the qat train flags of config $1 (besides --quant, --out, --seed)
  case $1 in
    xnor) echo "--epochs $XNOR_EPOCHS --lr 0.1 --schedule multistep --weight-decay 1e-4 --batch-size 100" ;;
    dorefa_a8w8 | dorefa_a4w4) echo "--init $RUNS/float/best.pt --epochs $((3 * QAT_EPOCHS)) --lr 0.01 --schedule cosine" ;;
    *) echo "--init $RUNS/float/best.pt --epochs $QAT_EPOCHS --lr 0.01 --schedule cosine" ;;
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

needs_float=0
for cfg in $CONFIGS; do
  [[ $(recipe "$cfg") == *--init* ]] && needs_float=1
done
if [[ $needs_float == 1 ]]; then
  train "$RUNS/float" "" --model resnet20 --epochs "$FLOAT_EPOCHS" --lr 0.1 --schedule cosine --batch-size 128 --seed 0
  if [[ $PACK == 1 ]]; then
    cp "$RUNS/float/best.pt" hwsim/pretrained/bundles/float_resnet20.pt
    cp "$RUNS/float/metrics.csv" hwsim/pretrained/bundles/float_resnet20.metrics.csv
  fi
fi
for cfg in $CONFIGS; do
  read -r -a flags <<<"$(recipe "$cfg")"
  start=("--quant" "configs/quant/$cfg.yaml")
  resume=()
  for ((i = 0; i < ${#flags[@]}; i++)); do  # --init starts a run; the rest is given on resume too
    if [[ ${flags[i]} == --init ]]; then start+=(--init "${flags[i + 1]}"); i=$((i + 1)); else resume+=("${flags[i]}"); fi
  done
  train "$RUNS/$cfg" "${start[*]}" --model resnet20 "${resume[@]}" --seed 0
  "$QAT" export "$RUNS/$cfg/best.pt" --out "$RUNS/$cfg.bundle"
  if [[ $PACK == 1 ]]; then
    "$PY" -m hwsim.pretrained.pack "$RUNS/$cfg.bundle" "$cfg" --checkpoint "$RUNS/$cfg/best.pt"
  fi
done
if [[ $PACK == 1 ]]; then
  "$PY" -m hwsim.pretrained.results --write docs/results.md
fi
