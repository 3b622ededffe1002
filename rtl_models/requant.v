// requant: the requantizer of docs/export-format.md for one element per cycle, bit-exact with
// hwsim.fixed.requantize (every rounding mode of hwsim.fixed.ROUNDING_MODES).
//
// Place in the flow: turns accumulators (plus an optional int32 bias), and for a residual add a
// second input, plus the channel's int64 offset, into output codes; checked against
// hwsim.fixed.requantize_sum by rtl_models/tb_requant.py.
//
//   total = (x0 + b0) * m0 + (x1 + b1) * m1 + offset   int64 (two's complement, as the int64 of hwsim)
//   q     = total >>> shift                        floor(total / 2^shift)
//   r     = total & (2^shift - 1)                  the remainder, 0 <= r < 2^shift
//   v     = q + up                                 up in {0, 1} by ROUNDING (below); shift 0 is the identity
//   y     = clamp(v, OUT format)                  func_sign = 0; `clamped` flags a clamp
//   y     = v >= 0 ? +1 : -1                      func_sign = 1 (the `sign` function; OUT_SIGNED=1)
//
// ROUNDING is the index of the mode in hwsim.fixed.ROUNDING_MODES (h = 2^(shift-1), shift >= 1):
//   0 half_up      up = r >= h                       4 ceil         up = r != 0
//   1 half_even    up = r > h | (r == h & q odd)     5 toward_zero  up = r != 0 & total < 0
//   2 half_away    up = r > h | (r == h & total >= 0)
//   3 floor        up = 0
// Nothing is added to total before the shift, so no intermediate leaves int64 for any total.
// OUT_NARROW=1 clamps a signed output to the symmetric range [-(2^(OUT_BITS-1) - 1), 2^(OUT_BITS-1) - 1]
// (the narrow lattice), else to the full range of OUT_BITS.
// A one-input requantizer ties x1, b1 and m1 to 0; a requantizer without offset ties offset to 0
// (the offset is added after the multiplications, at the 2^-shift scale). One register stage: the result of the
// inputs presented in a cycle (in_valid) appears after the next clock edge (out_valid).
`timescale 1ns / 1ps
`default_nettype none

module requant #(
    parameter integer X_BITS     = 32,
    parameter integer B_BITS     = 32,
    parameter integer MULT_BITS  = 32,
    parameter integer SHIFT_BITS = 6,
    parameter integer OUT_BITS   = 8,
    parameter integer OUT_SIGNED = 0,
    parameter integer OUT_NARROW = 0,
    parameter integer ROUNDING   = 0
) (
    input  wire                  clk,
    input  wire                  rst,
    input  wire                  in_valid,
    input  wire [X_BITS-1:0]     x0,
    input  wire [B_BITS-1:0]     b0,
    input  wire [MULT_BITS-1:0]  m0,
    input  wire [X_BITS-1:0]     x1,
    input  wire [B_BITS-1:0]     b1,
    input  wire [MULT_BITS-1:0]  m1,
    input  wire [63:0]           offset,
    input  wire [SHIFT_BITS-1:0] shift,
    input  wire                  func_sign,
    output reg                   out_valid,
    output reg  [OUT_BITS-1:0]   y,
    output reg                   clamped
);
    // An unknown ROUNDING code stops elaboration (the module below does not exist).
    generate
        if (ROUNDING < 0 || ROUNDING > 5) begin : g_bad_rounding
            requant_ROUNDING_must_be_0_to_5 bad_rounding ();
        end
    endgenerate

    localparam signed [63:0] ONE = 64'sd1;
    localparam signed [63:0] QMAX = (OUT_SIGNED != 0) ? (ONE <<< (OUT_BITS - 1)) - ONE
                                                      : (ONE <<< OUT_BITS) - ONE;
    localparam signed [63:0] QMIN = (OUT_SIGNED == 0) ? 64'sd0
                                  : (OUT_NARROW != 0) ? -QMAX : -(ONE <<< (OUT_BITS - 1));

    wire signed [63:0] x0_e = {{(64 - X_BITS){x0[X_BITS-1]}}, x0};
    wire signed [63:0] x1_e = {{(64 - X_BITS){x1[X_BITS-1]}}, x1};
    wire signed [63:0] b0_e = {{(64 - B_BITS){b0[B_BITS-1]}}, b0};
    wire signed [63:0] b1_e = {{(64 - B_BITS){b1[B_BITS-1]}}, b1};
    wire signed [63:0] m0_e = {{(64 - MULT_BITS){m0[MULT_BITS-1]}}, m0};
    wire signed [63:0] m1_e = {{(64 - MULT_BITS){m1[MULT_BITS-1]}}, m1};

    wire signed [63:0] offset_e = offset;
    wire signed [63:0] total = (x0_e + b0_e) * m0_e + (x1_e + b1_e) * m1_e + offset_e;

    // Rounding: q = floor(total / 2^shift), then add 0 or 1 (no intermediate leaves 64 bits).
    wire               shifted = (shift != {SHIFT_BITS{1'b0}});
    wire signed [63:0] q = total >>> shift;
    wire        [63:0] mask = (64'd1 << shift) - 64'd1;  // 2^shift - 1 (0 for shift 0)
    wire        [63:0] r = total & mask;                 // total mod 2^shift, unsigned
    wire        [63:0] h = {1'b0, mask[63:1]} + {63'd0, shifted};  // 2^(shift-1), 0 for shift 0
    wire               nonzero = (r != 64'd0);
    wire               above = shifted & (r > h);
    wire               tie = shifted & (r == h);
    wire               negative = total[63];
    wire               up = (ROUNDING == 0) ? (above | tie)
                          : (ROUNDING == 1) ? (above | (tie & q[0]))
                          : (ROUNDING == 2) ? (above | (tie & ~negative))
                          : (ROUNDING == 3) ? 1'b0
                          : (ROUNDING == 4) ? nonzero
                          : (nonzero & negative);  // 5: toward_zero
    wire signed [63:0] v = q + {63'd0, up};

    wire               over = (v > QMAX);
    wire               under = (v < QMIN);
    wire signed [63:0] clipped = over ? QMAX : (under ? QMIN : v);
    wire [OUT_BITS-1:0] plus_one = {{(OUT_BITS - 1){1'b0}}, 1'b1};

    always @(posedge clk) begin
        if (rst) begin
            out_valid <= 1'b0;
            y         <= {OUT_BITS{1'b0}};
            clamped   <= 1'b0;
        end else begin
            out_valid <= in_valid;
            if (func_sign) begin
                y       <= v[63] ? {OUT_BITS{1'b1}} : plus_one;
                clamped <= 1'b0;
            end else begin
                y       <= clipped[OUT_BITS-1:0];
                clamped <= over | under;
            end
        end
    end

    wire unused_ok = &{1'b0, clipped[63:OUT_BITS]};
endmodule

`default_nettype wire
