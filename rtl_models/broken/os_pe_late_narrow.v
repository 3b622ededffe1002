// os_pe_late_narrow: a deliberately broken os_pe that narrows its sum once, when it leaves the PE, instead of after every MAC.
//
// Place in the flow: rtl_models.sim.VARIANTS["late_narrowing"] swaps it in for os_pe.v;
// tests/rtl/test_os_array.py requires tb_os_array.py to reject it. The bug is a plausible one:
// the accumulator keeps GUARD extra bits and only the value shifted out during the drain (or
// carried into it) is narrowed to ACC_BITS, so wrap gives the same values (wrapping is modular)
// but fewer overflow events, and saturate clamps the final sum rather than every partial sum.
// Ports and parameters are os_pe's.
`timescale 1ns / 1ps
`default_nettype none

module os_pe #(
    parameter integer A_BITS   = 8,
    parameter integer W_BITS   = 8,
    parameter integer ACC_BITS = 32,
    parameter integer A_SIGNED = 0,
    parameter integer W_SIGNED = 1,
    parameter integer SATURATE = 0,
    parameter integer CNT_BITS = 32
) (
    input  wire                clk,
    input  wire                rst,
    input  wire                clr,
    input  wire                shift,
    input  wire [A_BITS-1:0]   a_in,
    output reg  [A_BITS-1:0]   a_out,
    input  wire [W_BITS-1:0]   w_in,
    output reg  [W_BITS-1:0]   w_out,
    input  wire [ACC_BITS-1:0] acc_in,
    output wire [ACC_BITS-1:0] acc,
    output reg                 ovf,
    output reg  [CNT_BITS-1:0] ovf_count
);
    localparam integer GUARD = 16;
    localparam integer WW = ACC_BITS + GUARD;
    localparam [ACC_BITS-1:0] ACC_MAX = {1'b0, {(ACC_BITS - 1){1'b1}}};
    localparam [ACC_BITS-1:0] ACC_MIN = {1'b1, {(ACC_BITS - 1){1'b0}}};

    reg  [WW-1:0] wide;
    wire          fits = (&wide[WW-1:ACC_BITS-1]) | ~(|wide[WW-1:ACC_BITS-1]);

    assign acc = (fits || SATURATE == 0) ? wide[ACC_BITS-1:0] : (wide[WW-1] ? ACC_MIN : ACC_MAX);

    always @(posedge clk) begin
        if (rst || shift) begin
            a_out <= {A_BITS{1'b0}};
            w_out <= {W_BITS{1'b0}};
        end else begin
            a_out <= a_in;
            w_out <= w_in;
        end
        if (rst || clr) wide <= {WW{1'b0}};
        else if (shift) wide <= {{GUARD{acc_in[ACC_BITS-1]}}, acc_in};
        else wide <= wide
                   + {{(WW - A_BITS){(A_SIGNED != 0) & a_in[A_BITS-1]}}, a_in}
                   * {{(WW - W_BITS){(W_SIGNED != 0) & w_in[W_BITS-1]}}, w_in};
        // one event per value that leaves narrowed
        if (rst || clr) begin
            ovf       <= 1'b0;
            ovf_count <= {CNT_BITS{1'b0}};
        end else if (shift && !fits) begin
            ovf       <= 1'b1;
            ovf_count <= ovf_count + 1'b1;
        end
    end
endmodule

`default_nettype wire
