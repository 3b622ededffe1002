"""hwsim never imports torch: every hwsim module imports in a fresh interpreter without loading it,
and no hwsim source file imports it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import hwsim

HWSIM = Path(hwsim.__file__).resolve().parent

SCRIPT = """
import importlib, pkgutil, sys
import hwsim
names = [m.name for m in pkgutil.walk_packages(hwsim.__path__, "hwsim.")]
for name in names:
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print(len(names), "modules;", "torch loaded by:" if loaded else "no torch", *loaded[:3])
sys.exit(1 if loaded else 0)
"""


def test_importing_every_hwsim_module_does_not_load_torch() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no torch" in proc.stdout


def test_no_hwsim_source_imports_torch() -> None:
    pattern = re.compile(r"^\s*(import\s+torch\b|from\s+torch\b)", re.MULTILINE)
    offenders = [str(p) for p in HWSIM.rglob("*.py") if pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
    assert len(list(HWSIM.rglob("*.py"))) > 5  # the scan did see the package
