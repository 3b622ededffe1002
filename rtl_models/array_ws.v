// array_ws: buffers, fold sequencer and cycle counter around systolic_array; runs one weight-stationary GEMM.
//
// Place in the flow: the RTL counterpart of hwsim's weight-stationary cycle-level model
// (docs/dataflow.md); array_top.v instantiates it for DATAFLOW 0 (ws) and, with A and W swapped,
// for DATAFLOW 2 (is). Driven by rtl_models/tb_array_top.py from a vector set written by
// `hwsim vectors`. The port interface is array_top's, documented in docs/rtl.md.
//
// The GEMM is Y[M, N] = A[M, K] * W[K, N] (+ Y when `accumulate`). Buffers, one word per address,
// each 2**ADDR_BITS words deep, loaded by the host while the sequencer is idle:
//   abuf  word kf*M + m            = A[m, kf*ROWS .. kf*ROWS+ROWS-1]   (ROWS codes, row r at bits r*A_BITS)
//   wbuf  word (nf*KF + kf)*ROWS + j = W[kf*ROWS + j, nf*COLS .. +COLS-1] (COLS codes)
//   obuf  word nf*M + m            = Y[m, nf*COLS .. nf*COLS+COLS-1]   (COLS accumulators)
// with KF = ceil(K/ROWS), codes past K or N are 0. `o_rdata` reads obuf[o_addr] combinationally.
//
// start (sampled while idle) latches M, K, N and `accumulate`, clears the overflow counters and the
// cycle counter. Folds run N-fold outer, K-fold inner; each costs ROWS preload cycles plus
// M + ROWS + nt - 2 stream cycles (nt = columns used by the fold). `cycles` counts every cycle from
// start to done, so it ends at the sum over folds of ROWS + M + ROWS + nt - 2. `done` stays high
// until the next start. A start with M, K or N equal to 0 finishes at once with 0 cycles.
`timescale 1ns / 1ps
`default_nettype none

module array_ws #(
    parameter integer ROWS      = 4,
    parameter integer COLS      = 4,
    parameter integer A_BITS    = 8,
    parameter integer W_BITS    = 8,
    parameter integer ACC_BITS  = 32,
    parameter integer A_SIGNED  = 0,
    parameter integer W_SIGNED  = 1,
    parameter integer SATURATE  = 0,
    parameter integer CNT_BITS  = 32,
    parameter integer CYC_BITS  = 32,
    parameter integer ADDR_BITS = 12
) (
    input  wire                     clk,
    input  wire                     rst,
    // host access to the buffers (ignored while busy)
    input  wire                     a_we,
    input  wire [ADDR_BITS-1:0]     a_addr,
    input  wire [ROWS*A_BITS-1:0]   a_wdata,
    input  wire                     w_we,
    input  wire [ADDR_BITS-1:0]     w_addr,
    input  wire [COLS*W_BITS-1:0]   w_wdata,
    input  wire                     o_we,
    input  wire [ADDR_BITS-1:0]     o_addr,
    input  wire [COLS*ACC_BITS-1:0] o_wdata,
    output wire [COLS*ACC_BITS-1:0] o_rdata,
    // run control
    input  wire                     start,
    input  wire                     accumulate,
    input  wire [ADDR_BITS-1:0]     m_rows,
    input  wire [ADDR_BITS-1:0]     k_depth,
    input  wire [ADDR_BITS-1:0]     n_cols,
    output wire                     busy,
    output reg                      done,
    output reg  [CYC_BITS-1:0]      cycles,
    output wire                     ovf,
    output wire [CNT_BITS-1:0]      ovf_count
);
    localparam integer DEPTH = 1 << ADDR_BITS;
    localparam integer TW = ADDR_BITS + 2;          // stream counter and dimension arithmetic
    localparam [TW-1:0] ROWS_T = ROWS[TW-1:0];
    localparam [TW-1:0] COLS_T = COLS[TW-1:0];
    localparam [TW-1:0] THREE_T = 3;
    localparam [1:0] S_IDLE = 2'd0, S_PRELOAD = 2'd1, S_STREAM = 2'd2;

    reg [ROWS*A_BITS-1:0] abuf [0:DEPTH-1];
    reg [COLS*W_BITS-1:0] wbuf [0:DEPTH-1];

    reg [1:0]           state;
    reg [TW-1:0]        m_q, k_q, n_q;      // GEMM dimensions
    reg                 acc_q;              // first K-fold adds onto obuf
    reg [TW-1:0]        k0, n0;             // first K index and first N index of the fold
    reg [TW-1:0]        step;               // preload cycle i, then stream cycle t
    reg [ADDR_BITS-1:0] a_base, w_base, o_base;

    wire [TW-1:0] n_rem = n_q - n0;
    wire [TW-1:0] nt = (n_rem > COLS_T) ? COLS_T : n_rem;
    wire [TW-1:0] t_last = m_q + ROWS_T + nt - THREE_T;
    wire          last_k = (k0 + ROWS_T >= k_q);
    wire          last_n = (n0 + COLS_T >= n_q);
    wire          preload = (state == S_PRELOAD);
    wire          streaming = (state == S_STREAM);
    wire          row_valid = streaming && (step < m_q);
    wire          carry_en = row_valid && (acc_q || k0 != {TW{1'b0}});
    wire          kick = (state == S_IDLE) && start;
    wire          zero_dim = (m_rows == {ADDR_BITS{1'b0}}) || (k_depth == {ADDR_BITS{1'b0}})
                           || (n_cols == {ADDR_BITS{1'b0}});

    wire [ADDR_BITS-1:0] step_a = step[ADDR_BITS-1:0];
    wire [ADDR_BITS-1:0] a_rd = a_base + step_a;
    wire [ADDR_BITS-1:0] w_rd = w_base + ROWS_T[ADDR_BITS-1:0] - 1'b1 - step_a;
    wire [ADDR_BITS-1:0] o_rd = o_base + step_a;

    wire [COLS*W_BITS-1:0]   w_top = preload ? wbuf[w_rd] : {COLS*W_BITS{1'b0}};
    wire [ROWS*A_BITS-1:0]   a_row = row_valid ? abuf[a_rd] : {ROWS*A_BITS{1'b0}};
    wire [COLS*ACC_BITS-1:0] carry_row;
    wire [COLS*ACC_BITS-1:0] y;
    wire [COLS-1:0]          y_valid;

    assign busy = (state != S_IDLE);

    systolic_array #(
        .ROWS(ROWS), .COLS(COLS), .A_BITS(A_BITS), .W_BITS(W_BITS), .ACC_BITS(ACC_BITS),
        .A_SIGNED(A_SIGNED), .W_SIGNED(W_SIGNED), .SATURATE(SATURATE), .CNT_BITS(CNT_BITS)
    ) u_array (
        .clk(clk), .rst(rst), .clr(kick),
        .w_load(preload), .w_top(w_top),
        .a_valid(row_valid), .a_row(a_row), .carry_row(carry_row),
        .y(y), .y_valid(y_valid),
        .ovf(ovf), .ovf_count(ovf_count)
    );

    // Host writes to abuf and wbuf.
    always @(posedge clk) begin
        if (a_we && !busy) abuf[a_addr] <= a_wdata;
        if (w_we && !busy) wbuf[w_addr] <= w_wdata;
    end

    // Output buffer: one bank per column, so that each column writes its own row m in the cycle
    // its result leaves the bottom of the array (column c lags column c-1 by one cycle).
    genvar c;
    generate
        for (c = 0; c < COLS; c = c + 1) begin : g_obuf
            localparam [TW-1:0] CIDX = c;
            reg [ACC_BITS-1:0]  bank [0:DEPTH-1];
            reg [ADDR_BITS-1:0] wptr;
            wire                wr = y_valid[c] && streaming && (CIDX < nt);
            always @(posedge clk) begin
                if (wr) bank[wptr] <= y[c*ACC_BITS +: ACC_BITS];
                else if (o_we && !busy) bank[o_addr] <= o_wdata[c*ACC_BITS +: ACC_BITS];
                if (!streaming) wptr <= o_base;
                else if (wr) wptr <= wptr + 1'b1;
            end
            assign carry_row[c*ACC_BITS +: ACC_BITS] = carry_en ? bank[o_rd] : {ACC_BITS{1'b0}};
            assign o_rdata[c*ACC_BITS +: ACC_BITS] = bank[o_addr];
        end
    endgenerate

    // Fold sequencer and cycle counter.
    always @(posedge clk) begin
        if (rst) begin
            state  <= S_IDLE;
            done   <= 1'b0;
            cycles <= {CYC_BITS{1'b0}};
            step   <= {TW{1'b0}};
        end else begin
            case (state)
                S_IDLE: if (start) begin
                    m_q    <= {2'b00, m_rows};
                    k_q    <= {2'b00, k_depth};
                    n_q    <= {2'b00, n_cols};
                    acc_q  <= accumulate;
                    k0     <= {TW{1'b0}};
                    n0     <= {TW{1'b0}};
                    a_base <= {ADDR_BITS{1'b0}};
                    w_base <= {ADDR_BITS{1'b0}};
                    o_base <= {ADDR_BITS{1'b0}};
                    step   <= {TW{1'b0}};
                    cycles <= {CYC_BITS{1'b0}};
                    done   <= zero_dim;
                    state  <= zero_dim ? S_IDLE : S_PRELOAD;
                end
                S_PRELOAD: begin
                    cycles <= cycles + 1'b1;
                    if (step == ROWS_T - 1'b1) begin
                        step  <= {TW{1'b0}};
                        state <= S_STREAM;
                    end else begin
                        step <= step + 1'b1;
                    end
                end
                S_STREAM: begin
                    cycles <= cycles + 1'b1;
                    if (step == t_last) begin
                        step   <= {TW{1'b0}};
                        w_base <= w_base + ROWS_T[ADDR_BITS-1:0];
                        if (last_k) begin
                            k0     <= {TW{1'b0}};
                            a_base <= {ADDR_BITS{1'b0}};
                            n0     <= n0 + COLS_T;
                            o_base <= o_base + m_q[ADDR_BITS-1:0];
                        end else begin
                            k0     <= k0 + ROWS_T;
                            a_base <= a_base + m_q[ADDR_BITS-1:0];
                        end
                        if (last_k && last_n) begin
                            done  <= 1'b1;
                            state <= S_IDLE;
                        end else begin
                            state <= S_PRELOAD;
                        end
                    end else begin
                        step <= step + 1'b1;
                    end
                end
                default: state <= S_IDLE;
            endcase
        end
    end

    wire unused_ok = &{1'b0, m_q[TW-1:ADDR_BITS], step[TW-1:ADDR_BITS]};
endmodule

`default_nettype wire
