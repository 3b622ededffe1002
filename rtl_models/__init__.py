"""rtl_models: Verilog of the MAC PE, the systolic array and the requantizer, and their cocotb testbenches.

The testbenches use hwsim as the scoreboard; pytest drives the simulators (tests/rtl/).
"""
