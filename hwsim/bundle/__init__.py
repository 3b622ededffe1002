"""The integer bundle: the one owner of the format between training and hardware (docs/export-format.md).

Place in the flow: producers (``qat export``, importers, the synthetic bundles of tests) build
bundles with :class:`BundleBuilder` and write them with :func:`save_bundle`; :func:`load_bundle`
reads and validates a bundle directory for the emulator, the MAC-array model, ``hwsim compare``,
the sweeps and the RTL vectors. Modules:

* ``graph``: the typed tensors and nodes, :class:`Bundle`, :class:`Reference`, :func:`quantize_images`;
* ``schema``: the one spelling of graph.yaml (every mapping's keys, read and written from one table);
* ``load``: validation, with a message naming file, node, field, value and fix for each broken rule;
* ``build``: :class:`BundleBuilder` and :func:`save_bundle`;
* ``lowering``: real-valued requantizers to integer multipliers, shifts and offsets; accumulator bounds;
* ``synthetic``: the tiny and random bundles that tests and benchmarks use.

Code formats (:class:`~hwsim.fixed.CodeFormat`) and the arithmetic live in ``hwsim.fixed``.
"""

from hwsim.bundle.build import BUNDLE, BundleBuilder, save_bundle, write_bundle_files
from hwsim.bundle.graph import (
    AvgPoolSumNode,
    Bundle,
    BundleError,
    BundleMeta,
    Conv2dNode,
    LinearNode,
    MacNode,
    MaxPoolNode,
    Node,
    Reference,
    RequantInput,
    RequantNode,
    TensorSpec,
    node_macs,
    quantize_images,
    window_output,
)
from hwsim.bundle.load import load_bundle, validate_bundle
from hwsim.bundle.schema import FORMAT_VERSION, FORMAT_VERSIONS, GRAPH_FILE, OPS, REFERENCE_FILE, TENSORS_FILE
from hwsim.fixed import LATTICES, CodeFormat

__all__ = [
    "BUNDLE",
    "FORMAT_VERSION",
    "FORMAT_VERSIONS",
    "GRAPH_FILE",
    "LATTICES",
    "OPS",
    "REFERENCE_FILE",
    "TENSORS_FILE",
    "AvgPoolSumNode",
    "Bundle",
    "BundleBuilder",
    "BundleError",
    "BundleMeta",
    "CodeFormat",
    "Conv2dNode",
    "LinearNode",
    "MacNode",
    "MaxPoolNode",
    "Node",
    "Reference",
    "RequantInput",
    "RequantNode",
    "TensorSpec",
    "load_bundle",
    "node_macs",
    "quantize_images",
    "save_bundle",
    "validate_bundle",
    "window_output",
    "write_bundle_files",
]
