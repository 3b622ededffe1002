"""hwsim: the hardware side of the flow, numpy only (it never imports torch).

bundle/ --(hwsim.bundle)--> emulator (bit-accurate integers) --> compare (vs the PyTorch reference)
                            array model (cycles, memory, overflow) --> simulate, sweep --> reports/<run>/

Glossary: a *code* is an integer standing for ``code * scale``; an *accumulator* is a MAC sum
held in ``acc_bits``; a *requantizer* turns accumulators back into codes
(``hwsim.fixed.requantize``); a *bundle* is the exported network (docs/export-format.md).
"""

__version__ = "0.1.0"
