// mac_pe (BROKEN on purpose): the product is truncated to max(A_BITS, W_BITS) bits before the add.
//
// Place in the flow: a drop-in replacement for rtl_models/mac_pe.v that the RTL tests must reject
// (tests/rtl/test_array_top.py::test_truncated_product_is_caught). It repeats a real bug class:
// a multiplier output declared as wide as one operand. Everything else is mac_pe.v unchanged.
//
// Each cycle with `en` high (and no weight shift), the PE multiplies its activation code by its
// stationary weight code exactly (each operand with its own signedness: A_SIGNED, W_SIGNED),
// adds the product to the partial sum from above and narrows the result to ACC_BITS with wrap
// (SATURATE=0) or saturate (SATURATE=1). A narrowing that changes the value is an overflow
// event: it sets the sticky flag `ovf` and increments `ovf_count` (CNT_BITS, wraps).
//
//   w_load   weights shift down the column: w_out <= w_in; no MAC happens in such a cycle
//   a_in/en  activation and its valid bit; both move right one PE per cycle (a_out, en_out)
//   psum     psum_out = narrow(psum_in + a_in * w), registered when PSUM_REG=1 (every row but
//            the last), combinational when PSUM_REG=0 (the bottom row, which feeds the output
//            buffer's write port in the same cycle)
//   clr      clears the overflow flag and counter (synchronous), rst clears everything
`timescale 1ns / 1ps
`default_nettype none
/* verilator lint_off DECLFILENAME */  // a drop-in for mac_pe.v: same module name, other file

module mac_pe #(
    parameter integer A_BITS   = 8,
    parameter integer W_BITS   = 8,
    parameter integer ACC_BITS = 32,
    parameter integer A_SIGNED = 0,
    parameter integer W_SIGNED = 1,
    parameter integer SATURATE = 0,
    parameter integer CNT_BITS = 32,
    parameter integer PSUM_REG = 1
) (
    input  wire                clk,
    input  wire                rst,
    input  wire                clr,
    input  wire                w_load,
    input  wire [W_BITS-1:0]   w_in,
    output wire [W_BITS-1:0]   w_out,
    input  wire                en,
    input  wire [A_BITS-1:0]   a_in,
    output reg                 en_out,
    output reg  [A_BITS-1:0]   a_out,
    input  wire [ACC_BITS-1:0] psum_in,
    output wire [ACC_BITS-1:0] psum_out,
    output reg                 ovf,
    output reg  [CNT_BITS-1:0] ovf_count
);
    // The exact product needs A_BITS + W_BITS + 1 bits and the exact sum one bit more than the
    // wider of the product and the partial sum: SW bits hold every exact sum.
    localparam integer PW = A_BITS + W_BITS + 2;
    localparam integer SW = ((ACC_BITS > PW) ? ACC_BITS : PW) + 1;
    localparam [ACC_BITS-1:0] ACC_MAX = {1'b0, {(ACC_BITS - 1){1'b1}}};
    localparam [ACC_BITS-1:0] ACC_MIN = {1'b1, {(ACC_BITS - 1){1'b0}}};
    // The bug: the product keeps only TW = max(A_BITS, W_BITS) bits, then is sign-extended.
    localparam integer TW = (A_BITS > W_BITS) ? A_BITS : W_BITS;

    reg  [W_BITS-1:0] w_reg;
    wire              fire = en & ~w_load;

    assign w_out = w_reg;

    always @(posedge clk) begin
        if (rst) begin
            w_reg  <= {W_BITS{1'b0}};
            a_out  <= {A_BITS{1'b0}};
            en_out <= 1'b0;
        end else begin
            if (w_load) w_reg <= w_in;
            a_out  <= a_in;
            en_out <= fire;
        end
    end

    // The MAC: every operand sign-extended (by its signedness) to SW bits, so the low SW bits of
    // the product and of the sum are exact. The sum fits ACC_BITS when its bits from ACC_BITS-1
    // up are all equal; otherwise narrowing wraps (keeps the low bits) or saturates.
    generate
        if (PSUM_REG != 0) begin : g_reg
            // Registered rows compute in the clocked process: once per clock edge with `fire`
            // (an event-driven simulator would otherwise re-evaluate a net cone per input change).
            reg [ACC_BITS-1:0] psum_q;
            always @(posedge clk) begin : mac
                reg [SW-1:0] sum;
                reg [SW-1:0] full;
                reg          fits;
                fits = 1'b1;
                if (rst) begin
                    psum_q <= {ACC_BITS{1'b0}};
                end else if (fire) begin
                    full = {{(SW - A_BITS){(A_SIGNED != 0) & a_in[A_BITS-1]}}, a_in}
                         * {{(SW - W_BITS){(W_SIGNED != 0) & w_reg[W_BITS-1]}}, w_reg};
                    sum = {{(SW - ACC_BITS){psum_in[ACC_BITS-1]}}, psum_in}
                        + {{(SW - TW){full[TW-1]}}, full[TW-1:0]};
                    fits = (&sum[SW-1:ACC_BITS-1]) | ~(|sum[SW-1:ACC_BITS-1]);
                    if (fits || SATURATE == 0) psum_q <= sum[ACC_BITS-1:0];
                    else psum_q <= sum[SW-1] ? ACC_MIN : ACC_MAX;
                end
                if (rst || clr) begin
                    ovf       <= 1'b0;
                    ovf_count <= {CNT_BITS{1'b0}};
                end else if (!fits) begin
                    ovf       <= 1'b1;
                    ovf_count <= ovf_count + 1'b1;
                end
            end
            assign psum_out = psum_q;
        end else begin : g_comb
            // The bottom row: the same MAC as nets, for the output buffer's write port.
            wire [SW-1:0] full = {{(SW - A_BITS){(A_SIGNED != 0) & a_in[A_BITS-1]}}, a_in}
                               * {{(SW - W_BITS){(W_SIGNED != 0) & w_reg[W_BITS-1]}}, w_reg};
            wire [SW-1:0] sum = {{(SW - ACC_BITS){psum_in[ACC_BITS-1]}}, psum_in}
                              + {{(SW - TW){full[TW-1]}}, full[TW-1:0]};
            wire          unused_ok = &{1'b0, full[SW-1:TW]};
            wire          fits = (&sum[SW-1:ACC_BITS-1]) | ~(|sum[SW-1:ACC_BITS-1]);
            assign psum_out = (fits || SATURATE == 0) ? sum[ACC_BITS-1:0] : (sum[SW-1] ? ACC_MIN : ACC_MAX);
            always @(posedge clk) begin
                if (rst || clr) begin
                    ovf       <= 1'b0;
                    ovf_count <= {CNT_BITS{1'b0}};
                end else if (fire && !fits) begin
                    ovf       <= 1'b1;
                    ovf_count <= ovf_count + 1'b1;
                end
            end
        end
    endgenerate
endmodule

`default_nettype wire
