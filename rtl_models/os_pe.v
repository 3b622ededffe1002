// os_pe: one output-stationary MAC processing element: its accumulator keeps one output of Y.
//
// Place in the flow: instantiated ROWS x COLS times by os_array.v (the output-stationary array,
// hwsim/dataflows/output_stationary.py); checked through os_array by rtl_models/tb_os_array.py.
//
// Both operands move: the activation code enters from the left and leaves to the right
// registered (a_out), the weight code enters from the top and leaves downwards registered
// (w_out), so each advances one PE per cycle.
//
//   shift=0  MAC cycle: acc <= narrow(acc + a_in * w_in), the exact product of the two codes
//            (each with its own signedness: A_SIGNED, W_SIGNED) narrowed to ACC_BITS with wrap
//            (SATURATE=0) or saturate (SATURATE=1), exactly as mac_pe's; a narrowing that
//            changes the value is an overflow event: sticky `ovf`, `ovf_count` (CNT_BITS, wraps)
//   shift=1  the accumulators move down one row: acc <= acc_in (the PE above's acc, or what the
//            array feeds row 0); no MAC, and a_out, w_out clear, so a fold starts on empty pipes
//   clr      clears acc, ovf and ovf_count (synchronous, the first cycle of a GEMM); rst clears all
//
// The arithmetic is mac_pe's (same widths, same sign extension, same narrowing test); it is
// written out here rather than shared because the registers around it differ (the sum feeds back
// into acc instead of going down, and the weight moves instead of staying).
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
    output reg  [ACC_BITS-1:0] acc,
    output reg                 ovf,
    output reg  [CNT_BITS-1:0] ovf_count
);
    // The exact product needs A_BITS + W_BITS + 1 bits and the exact sum one bit more than the
    // wider of the product and the accumulator: SW bits hold every exact sum.
    localparam integer PW = A_BITS + W_BITS + 2;
    localparam integer SW = ((ACC_BITS > PW) ? ACC_BITS : PW) + 1;
    localparam [ACC_BITS-1:0] ACC_MAX = {1'b0, {(ACC_BITS - 1){1'b1}}};
    localparam [ACC_BITS-1:0] ACC_MIN = {1'b1, {(ACC_BITS - 1){1'b0}}};

    // One clocked process: the MAC is evaluated once per clock edge (an event-driven simulator
    // would otherwise re-evaluate a net cone per input change).
    always @(posedge clk) begin : mac
        reg [SW-1:0] sum;
        reg          fits;
        fits = 1'b1;
        if (rst || shift) begin
            a_out <= {A_BITS{1'b0}};
            w_out <= {W_BITS{1'b0}};
        end else begin
            a_out <= a_in;
            w_out <= w_in;
        end
        if (rst || clr) begin
            acc <= {ACC_BITS{1'b0}};
        end else if (shift) begin
            acc <= acc_in;
        end else begin
            sum = {{(SW - ACC_BITS){acc[ACC_BITS-1]}}, acc}
                + {{(SW - A_BITS){(A_SIGNED != 0) & a_in[A_BITS-1]}}, a_in}
                * {{(SW - W_BITS){(W_SIGNED != 0) & w_in[W_BITS-1]}}, w_in};
            fits = (&sum[SW-1:ACC_BITS-1]) | ~(|sum[SW-1:ACC_BITS-1]);
            if (fits || SATURATE == 0) acc <= sum[ACC_BITS-1:0];
            else acc <= sum[SW-1] ? ACC_MIN : ACC_MAX;
        end
        if (rst || clr) begin
            ovf       <= 1'b0;
            ovf_count <= {CNT_BITS{1'b0}};
        end else if (!fits) begin
            ovf       <= 1'b1;
            ovf_count <= ovf_count + 1'b1;
        end
    end
endmodule

`default_nettype wire
