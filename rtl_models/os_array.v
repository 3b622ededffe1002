// os_array: ROWS x COLS output-stationary grid of os_pe with input and weight skew (hwsim/dataflows/output_stationary.py).
//
// Place in the flow: instantiated by array_os.v; checked cycle by cycle against hwsim's
// register-level os machine (hwsim.systolic.run_gemm_cycles) by rtl_models/tb_os_array.py.
//
// Ports (all synchronous to clk; rst synchronous, active high):
//   clr      clears every accumulator and the overflow flags and counters (first cycle of a GEMM)
//   shift    1: the accumulators move down one row (acc_top enters row 0, the bottom row's value
//            is on y before the edge) and the operand pipes clear; 0: every PE does one MAC
//   a_left   one activation code per row (row r at bits r*A_BITS), presented unskewed: row r is
//            delayed r cycles (input skew) before it enters PE (r, 0)
//   w_top    one weight code per column (column c at bits c*W_BITS), unskewed: column c is delayed
//            c cycles (weight skew) before it enters PE (0, c)
//   acc_top  one accumulator per column, the value row 0 takes in a shift cycle
//   y        the bottom row's accumulators (registered), column c at bits c*ACC_BITS
//   ovf, ovf_count  the OR of the PEs' sticky flags, the sum of their counters (combinational)
//
// Schedule of one fold (an mt x nt tile of Y, stream cycle t = 0 is the first MAC cycle):
//   load     (only for Y = C + A*W) ROWS shift cycles; acc_top in load cycle i is C's row
//            ROWS-1-i of the tile, which ends in row ROWS-1-i; without C the accumulators must be
//            0, as clr and every drain leave them
//   stream   K + mt + nt - 2 cycles with shift low: in cycle t the caller presents A[m0+r, t] on
//            a_left and W[t, n0+c] on w_top for t < K (0 otherwise, and 0 in rows >= mt and
//            columns >= nt), so PE (r, c) multiplies the codes of k = t - r - c
//   drain    ROWS shift cycles with acc_top = 0: in drain cycle d, y holds row ROWS-1-d of the
//            tile (Y[m0 + ROWS-1-d, n0 + c] in column c), and the accumulators end at 0
`timescale 1ns / 1ps
`default_nettype none

module os_array #(
    parameter integer ROWS     = 4,
    parameter integer COLS     = 4,
    parameter integer A_BITS   = 8,
    parameter integer W_BITS   = 8,
    parameter integer ACC_BITS = 32,
    parameter integer A_SIGNED = 0,
    parameter integer W_SIGNED = 1,
    parameter integer SATURATE = 0,
    parameter integer CNT_BITS = 32
) (
    input  wire                     clk,
    input  wire                     rst,
    input  wire                     clr,
    input  wire                     shift,
    input  wire [ROWS*A_BITS-1:0]   a_left,
    input  wire [COLS*W_BITS-1:0]   w_top,
    input  wire [COLS*ACC_BITS-1:0] acc_top,
    output wire [COLS*ACC_BITS-1:0] y,
    output wire                     ovf,
    output wire [CNT_BITS-1:0]      ovf_count
);
    // Links between PEs, one net per PE port (net arrays, not one wide vector, so that a simulator
    // wakes only the PE whose input changed): activations run right (ROWS x (COLS+1)), weights and
    // accumulators run down ((ROWS+1) x COLS).
    wire [A_BITS-1:0]   a_link   [0:ROWS*(COLS+1)-1];
    wire [W_BITS-1:0]   w_link   [0:(ROWS+1)*COLS-1];
    wire [ACC_BITS-1:0] acc_link [0:(ROWS+1)*COLS-1];

    // Overflow flags and counters: each row ORs and sums its PEs, then the rows are combined
    // (per-row arrays keep a change in one PE's counter from waking the other rows' sums).
    wire                row_ovf [0:ROWS-1];
    wire [CNT_BITS-1:0] row_cnt [0:ROWS-1];
    reg                 ovf_any;
    reg  [CNT_BITS-1:0] cnt_total;
    integer             i;

    always @* begin
        ovf_any = 1'b0;
        cnt_total = {CNT_BITS{1'b0}};
        for (i = 0; i < ROWS; i = i + 1) begin
            ovf_any = ovf_any | row_ovf[i];
            cnt_total = cnt_total + row_cnt[i];
        end
    end
    assign ovf = ovf_any;
    assign ovf_count = cnt_total;

    genvar r, c;
    generate
        // Input skew: row r's activation passes through r registers, one shift register per row
        // (one process per row, not one per stage); it clears in shift cycles, as the PEs' pipes do.
        for (r = 0; r < ROWS; r = r + 1) begin : g_askew
            if (r == 0) begin : g_direct
                assign a_link[0] = a_left[0 +: A_BITS];
            end else if (r == 1) begin : g_one
                reg [A_BITS-1:0] a_sr;
                always @(posedge clk) a_sr <= (rst || shift) ? {A_BITS{1'b0}} : a_left[A_BITS +: A_BITS];
                assign a_link[COLS+1] = a_sr;
            end else begin : g_delay
                reg [r*A_BITS-1:0] a_sr;   // stage d at bits d*A_BITS (stage r-1 feeds the row)
                always @(posedge clk) begin
                    if (rst || shift) a_sr <= {(r*A_BITS){1'b0}};
                    else a_sr <= {a_sr[(r-1)*A_BITS-1:0], a_left[r*A_BITS +: A_BITS]};
                end
                assign a_link[r*(COLS+1)] = a_sr[(r-1)*A_BITS +: A_BITS];
            end
        end

        // Weight skew: column c's weight passes through c registers (one shift register per column).
        for (c = 0; c < COLS; c = c + 1) begin : g_wskew
            assign acc_link[c] = acc_top[c*ACC_BITS +: ACC_BITS];
            if (c == 0) begin : g_direct
                assign w_link[0] = w_top[0 +: W_BITS];
            end else if (c == 1) begin : g_one
                reg [W_BITS-1:0] w_sr;
                always @(posedge clk) w_sr <= (rst || shift) ? {W_BITS{1'b0}} : w_top[W_BITS +: W_BITS];
                assign w_link[1] = w_sr;
            end else begin : g_delay
                reg [c*W_BITS-1:0] w_sr;
                always @(posedge clk) begin
                    if (rst || shift) w_sr <= {(c*W_BITS){1'b0}};
                    else w_sr <= {w_sr[(c-1)*W_BITS-1:0], w_top[c*W_BITS +: W_BITS]};
                end
                assign w_link[c] = w_sr[(c-1)*W_BITS +: W_BITS];
            end
        end

        for (r = 0; r < ROWS; r = r + 1) begin : g_row
            wire                pe_ovf [0:COLS-1];
            wire [CNT_BITS-1:0] pe_cnt [0:COLS-1];
            reg                 ovf_or;
            reg  [CNT_BITS-1:0] cnt_sum;
            integer             j;
            always @* begin
                ovf_or = 1'b0;
                cnt_sum = {CNT_BITS{1'b0}};
                for (j = 0; j < COLS; j = j + 1) begin
                    ovf_or = ovf_or | pe_ovf[j];
                    cnt_sum = cnt_sum + pe_cnt[j];
                end
            end
            assign row_ovf[r] = ovf_or;
            assign row_cnt[r] = cnt_sum;

            for (c = 0; c < COLS; c = c + 1) begin : g_col
                os_pe #(
                    .A_BITS(A_BITS), .W_BITS(W_BITS), .ACC_BITS(ACC_BITS),
                    .A_SIGNED(A_SIGNED), .W_SIGNED(W_SIGNED), .SATURATE(SATURATE),
                    .CNT_BITS(CNT_BITS)
                ) u_pe (
                    .clk(clk), .rst(rst), .clr(clr), .shift(shift),
                    .a_in(a_link[r*(COLS+1) + c]),
                    .a_out(a_link[r*(COLS+1) + c + 1]),
                    .w_in(w_link[r*COLS + c]),
                    .w_out(w_link[(r+1)*COLS + c]),
                    .acc_in(acc_link[r*COLS + c]),
                    .acc(acc_link[(r+1)*COLS + c]),
                    .ovf(pe_ovf[c]),
                    .ovf_count(pe_cnt[c])
                );
            end
        end

        for (c = 0; c < COLS; c = c + 1) begin : g_y
            assign y[c*ACC_BITS +: ACC_BITS] = acc_link[ROWS*COLS + c];
        end
        // The activations leaving the last column and the weights leaving the last row go nowhere.
        for (r = 0; r < ROWS; r = r + 1) begin : g_unused_a
            wire unused_a = &{1'b0, a_link[r*(COLS+1) + COLS]};
        end
        for (c = 0; c < COLS; c = c + 1) begin : g_unused_w
            wire unused_w = &{1'b0, w_link[ROWS*COLS + c]};
        end
    endgenerate
endmodule

`default_nettype wire
