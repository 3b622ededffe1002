"""``python -m qat``: the ``qat`` command line (qat.cli), as ``torchrun -m qat train`` runs it per process."""

from __future__ import annotations

import sys

from qat.cli import main

if __name__ == "__main__":
    sys.exit(main())
