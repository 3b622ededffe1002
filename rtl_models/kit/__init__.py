"""The verification kit: check any accelerator RTL against hwsim, from a short description and adapter.

Place in the flow: a bundle's MAC layers become work items (``work``: tiles of the layer's GEMM in
the design's shape, with the emulator's exact expected outputs), a declarative description of the
design (``spec``: ports, protocol, clock and reset, widths) says how they travel
(``layout``: matrices as beats), the cocotb side drives and watches the design (``protocols``,
``tb``) and the ``scoreboard`` compares; ``runner`` builds your sources on Icarus or Verilator and
runs it all (``python -m rtl_models.check --dut dut.yaml``). docs/rtl.md, "Your RTL in 40 lines".
"""
