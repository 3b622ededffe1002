// requant: the DESIGN.md requantizer for one element per cycle, bit-exact with hwsim.fixed.requantize.
//
// Place in the flow: turns accumulators (plus an optional int32 bias), and for a residual add a
// second input, plus the channel's int64 offset, into output codes; checked against
// hwsim.fixed.requantize by rtl_models/tb_requant.py.
//
//   total = (x0 + b0) * m0 + (x1 + b1) * m1 + offset   int64 (two's complement, as the int64 of hwsim)
//   v     = (total + 2**(shift-1)) >>> shift      round half up; shift 0 is the identity
//   y     = clamp(v, OUT format)                  func_sign = 0; `clamped` flags a clamp
//   y     = v >= 0 ? +1 : -1                      func_sign = 1 (the `sign` function; OUT_SIGNED=1)
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
    parameter integer OUT_SIGNED = 0
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
    localparam signed [63:0] ONE = 64'sd1;
    localparam signed [63:0] QMAX = (OUT_SIGNED != 0) ? (ONE <<< (OUT_BITS - 1)) - ONE
                                                      : (ONE <<< OUT_BITS) - ONE;
    localparam signed [63:0] QMIN = (OUT_SIGNED != 0) ? -(ONE <<< (OUT_BITS - 1)) : 64'sd0;

    wire signed [63:0] x0_e = {{(64 - X_BITS){x0[X_BITS-1]}}, x0};
    wire signed [63:0] x1_e = {{(64 - X_BITS){x1[X_BITS-1]}}, x1};
    wire signed [63:0] b0_e = {{(64 - B_BITS){b0[B_BITS-1]}}, b0};
    wire signed [63:0] b1_e = {{(64 - B_BITS){b1[B_BITS-1]}}, b1};
    wire signed [63:0] m0_e = {{(64 - MULT_BITS){m0[MULT_BITS-1]}}, m0};
    wire signed [63:0] m1_e = {{(64 - MULT_BITS){m1[MULT_BITS-1]}}, m1};

    wire signed [63:0] offset_e = offset;
    wire signed [63:0] total = (x0_e + b0_e) * m0_e + (x1_e + b1_e) * m1_e + offset_e;
    wire signed [63:0] half = (shift == {SHIFT_BITS{1'b0}}) ? 64'sd0
                                                           : (ONE <<< (shift - 1'b1));
    wire signed [63:0] v = (total + half) >>> shift;

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
