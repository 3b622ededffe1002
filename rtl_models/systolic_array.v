// systolic_array: ROWS x COLS weight-stationary grid of mac_pe with input and carry skew (docs/dataflow.md).
//
// Place in the flow: instantiated by array_top.v; checked cycle by cycle against hwsim's
// cycle-level model by rtl_models/tb_systolic_array.py.
//
// Schedule of one fold (stream cycle t = 0 is the cycle in which row m = 0 is presented):
//   preload  w_load high for ROWS cycles; w_top (one weight per column) enters row 0 and shifts
//            down one row per cycle, so the word presented in preload cycle i ends in row ROWS-1-i.
//   stream   in cycle m the caller presents row m unskewed: a_row = A[m, k0 .. k0+ROWS-1] with
//            a_valid, and carry_row = the partial sums carried from the previous K-fold (0 for the
//            first). Row r of a_row is delayed r cycles (input skew) and column c of carry_row c
//            cycles, so PE (r, c) works on row m in cycle m + r + c.
//   output   y[c] with y_valid[c] is Y[m, n0 + c] in cycle m + ROWS - 1 + c (bottom row, not
//            registered: the output buffer's write port registers it).
// ovf is the OR of the PEs' sticky flags, ovf_count the sum of their counters (both combinational).
`timescale 1ns / 1ps
`default_nettype none

module systolic_array #(
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
    input  wire                     w_load,
    input  wire [COLS*W_BITS-1:0]   w_top,
    input  wire                     a_valid,
    input  wire [ROWS*A_BITS-1:0]   a_row,
    input  wire [COLS*ACC_BITS-1:0] carry_row,
    output wire [COLS*ACC_BITS-1:0] y,
    output wire [COLS-1:0]          y_valid,
    output wire                     ovf,
    output wire [CNT_BITS-1:0]      ovf_count
);
    // Links between PEs, one net per PE port (net arrays, not one wide vector, so that a simulator
    // wakes only the PE whose input changed): a/en run right (ROWS x (COLS+1)), weights and
    // partial sums run down ((ROWS+1) x COLS).
    wire [A_BITS-1:0]   a_link  [0:ROWS*(COLS+1)-1];
    wire                en_link [0:ROWS*(COLS+1)-1];
    wire [W_BITS-1:0]   w_link  [0:(ROWS+1)*COLS-1];
    wire [ACC_BITS-1:0] p_link  [0:(ROWS+1)*COLS-1];

    // Overflow flags and counters: each row ORs and sums its PEs (g_row[r].ovf_or, .cnt_sum),
    // then the rows are combined. Per-row arrays keep a change in one PE's counter from waking
    // the sums of the other rows in an event-driven simulator.
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
        // Input skew: row r's activation and valid bit pass through r registers, kept as one
        // shift register per row (one process per row, not one per stage).
        for (r = 0; r < ROWS; r = r + 1) begin : g_askew
            if (r == 0) begin : g_direct
                assign a_link[0] = a_row[0 +: A_BITS];
                assign en_link[0] = a_valid;
            end else if (r == 1) begin : g_one
                reg [A_BITS-1:0] a_sr;
                reg              v_sr;
                always @(posedge clk) begin
                    a_sr <= a_row[A_BITS +: A_BITS];
                    v_sr <= a_valid & ~rst;
                end
                assign a_link[COLS+1] = a_sr;
                assign en_link[COLS+1] = v_sr;
            end else begin : g_delay
                reg [r*A_BITS-1:0] a_sr;   // stage d at bits d*A_BITS (stage r-1 feeds the row)
                reg [r-1:0]        v_sr;
                always @(posedge clk) begin
                    a_sr <= {a_sr[(r-1)*A_BITS-1:0], a_row[r*A_BITS +: A_BITS]};
                    v_sr <= {v_sr[r-2:0], a_valid} & {r{~rst}};
                end
                assign a_link[r*(COLS+1)] = a_sr[(r-1)*A_BITS +: A_BITS];
                assign en_link[r*(COLS+1)] = v_sr[r-1];
            end
        end

        // Carry skew: column c's carried partial sum passes through c registers (one shift
        // register per column).
        for (c = 0; c < COLS; c = c + 1) begin : g_cskew
            assign w_link[c] = w_top[c*W_BITS +: W_BITS];
            if (c == 0) begin : g_direct
                assign p_link[0] = carry_row[0 +: ACC_BITS];
            end else if (c == 1) begin : g_one
                reg [ACC_BITS-1:0] p_sr;
                always @(posedge clk) p_sr <= carry_row[ACC_BITS +: ACC_BITS];
                assign p_link[1] = p_sr;
            end else begin : g_delay
                reg [c*ACC_BITS-1:0] p_sr;
                always @(posedge clk) p_sr <= {p_sr[(c-1)*ACC_BITS-1:0], carry_row[c*ACC_BITS +: ACC_BITS]};
                assign p_link[c] = p_sr[(c-1)*ACC_BITS +: ACC_BITS];
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
                mac_pe #(
                    .A_BITS(A_BITS), .W_BITS(W_BITS), .ACC_BITS(ACC_BITS),
                    .A_SIGNED(A_SIGNED), .W_SIGNED(W_SIGNED), .SATURATE(SATURATE),
                    .CNT_BITS(CNT_BITS), .PSUM_REG((r < ROWS - 1) ? 1 : 0)
                ) u_pe (
                    .clk(clk), .rst(rst), .clr(clr),
                    .w_load(w_load),
                    .w_in(w_link[r*COLS + c]),
                    .w_out(w_link[(r+1)*COLS + c]),
                    .en(en_link[r*(COLS+1) + c]),
                    .a_in(a_link[r*(COLS+1) + c]),
                    .en_out(en_link[r*(COLS+1) + c + 1]),
                    .a_out(a_link[r*(COLS+1) + c + 1]),
                    .psum_in(p_link[r*COLS + c]),
                    .psum_out(p_link[(r+1)*COLS + c]),
                    .ovf(pe_ovf[c]),
                    .ovf_count(pe_cnt[c])
                );
            end
            // The valid bit of the bottom row is the output's valid bit.
            if (r == ROWS - 1) begin : g_valid
                for (c = 0; c < COLS; c = c + 1) begin : g_v
                    assign y_valid[c] = en_link[r*(COLS+1) + c] & ~w_load;
                end
            end
        end
    endgenerate

    generate
        for (c = 0; c < COLS; c = c + 1) begin : g_y
            assign y[c*ACC_BITS +: ACC_BITS] = p_link[ROWS*COLS + c];
        end
        // The activations leaving the last column and the weights leaving the last row go nowhere.
        for (r = 0; r < ROWS; r = r + 1) begin : g_unused_a
            wire unused_a = &{1'b0, a_link[r*(COLS+1) + COLS], en_link[r*(COLS+1) + COLS]};
        end
        for (c = 0; c < COLS; c = c + 1) begin : g_unused_w
            wire unused_w = &{1'b0, w_link[ROWS*COLS + c]};
        end
    endgenerate
endmodule

`default_nettype wire
