"""Resource limits on what users hand in: their defaults and the environment variables that raise them.

Place in the flow: read where input is parsed, before any work that could exhaust memory or time:
``hwsim.yaml_io`` (every YAML file: hardware, quantization, graph.yaml, manifests) and
``hwsim.bundle.load`` (tensors.npz, reference.npz, and each node's working size), ``hwsim.vectors``
(the register-level array model's work). Each limit is a
stated default, large enough for every bundled model and far below what a machine holds; a user
with a legitimately larger input raises it with the environment variable named in the message.
docs/reliability.md lists them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hwsim.errors import UserError


@dataclass(frozen=True)
class Limit:
    """One limit: its default, the environment variable that overrides it, and what it bounds."""

    env: str
    default: int
    what: str

    def value(self) -> int:
        """The limit in force: the environment variable when set (a positive integer), else the default."""
        raw = os.environ.get(self.env)
        if raw is None or raw.strip() == "":
            return self.default
        try:
            value = int(raw.strip().replace("_", ""))
        except ValueError:
            value = 0
        if value < 1:
            raise UserError(
                f"environment variable {self.env}={raw[:40]!r}: expected a positive integer "
                f"({self.what}; default {self.default}); fix or unset it"
            )
        return value

    def how_to_raise(self) -> str:
        """The sentence a message ends with: how to allow more."""
        return f"set the environment variable {self.env} to allow more (default {self.default})"


MiB = 1 << 20
GiB = 1 << 30

YAML_BYTES = Limit("HWSIM_MAX_YAML_BYTES", 4 * MiB, "bytes of one YAML file")
"""Size of one YAML file, checked before it is read (graph.yaml of ResNet20: 15 KB)."""
YAML_NODES = Limit("HWSIM_MAX_YAML_NODES", 250_000, "nodes of one YAML document")
"""Scalars, lists and mappings of one YAML document (graph.yaml of ResNet20: about 1,800)."""
YAML_DEPTH = 64
"""Nesting of lists and mappings in a YAML document (the project's files nest at most 6 deep)."""
YAML_ALIAS_NODES = 10_000
"""Nodes that YAML aliases (``*name``) may repeat in one document, in total (none of the project's
files uses an alias): a document cannot grow by expansion (billion laughs)."""

NPZ_BYTES = Limit("HWSIM_MAX_NPZ_BYTES", 1024 * MiB, "uncompressed bytes of one .npz archive")
"""Declared uncompressed size of all members of one tensors.npz or reference.npz (ResNet20's
reference.npz: 6 MB), checked before anything is decompressed."""
NPZ_RATIO = 500
"""Compression ratio (uncompressed / compressed) above which a member larger than
:data:`NPZ_RATIO_FLOOR` is refused as a decompression bomb (real arrays compress less than 20:1)."""
NPZ_RATIO_FLOOR = 1 * MiB

WORKING_BYTES = Limit(
    "HWSIM_MAX_WORKING_BYTES", 1 * GiB, "working bytes of one node for one image (int64 elements)"
)
"""What one node needs for one image, counted as int64: its inputs, its output and, for a conv or a
maxpool, the zero-padded input and (conv) the im2col matrix. The emulator holds at least one
image at a time, so a bundle above this limit cannot run. The bundled ResNet20s need at most
1.6 MiB for their largest node."""

PE_CYCLES = Limit(
    "HWSIM_MAX_PE_CYCLES", 20_000_000_000, "PE-cycles of one GEMM in the register-level array model"
)
"""Work of one GEMM in ``hwsim vectors`` (cycles x rows x cols; about 10^8 a second): a vector set
is for an RTL simulator, which takes far longer still (the first ResNet20 conv on a 16x16 array:
1.4 x 10^8)."""
