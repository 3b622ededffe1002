// array_os: buffers, fold sequencer and cycle counter around os_array; runs one GEMM from start to done on the output-stationary array.
//
// Place in the flow: the RTL counterpart of hwsim's output-stationary register-level model
// (hwsim/dataflows/output_stationary.py, hwsim.systolic.run_gemm_cycles); array_top.v
// instantiates it for DATAFLOW = 1 and gives it array_top's parameters and ports (docs/rtl.md).
//
// The GEMM is Y[M, N] = A[M, K] * W[K, N] (+ C when `accumulate`). Buffers, one word per address,
// each 2**ADDR_BITS words deep, loaded by the host while the sequencer is idle (codes past M or N
// are 0; lanes past the fold's tile are ignored):
//   abuf  word mf*K + k  = A[mf*ROWS .. mf*ROWS+ROWS-1, k]   (ROWS codes, row r at bits r*A_BITS)
//   wbuf  word nf*K + k  = W[k, nf*COLS .. nf*COLS+COLS-1]   (COLS codes, column c at bits c*W_BITS)
//   obuf  word nf*M + m  = Y[m, nf*COLS .. nf*COLS+COLS-1]   (COLS accumulators, as array_ws's)
// `o_rdata` reads obuf[o_addr] combinationally.
//
// start (sampled while idle) latches M, K, N and `accumulate`, clears the accumulators, the
// overflow counters and the cycle counter. Folds run N-fold outer, M-fold inner; a fold holds an
// mt x nt tile of Y (mt <= ROWS rows from m0, nt <= COLS columns from n0) and costs:
//   load    only with `accumulate`: ROWS cycles; load cycle i shifts obuf word nf*M + m0+ROWS-1-i
//           (0 for rows >= mt) into the top row, so it ends in row ROWS-1-i
//   stream  K + mt + nt - 2 cycles; stream cycle t (t < K) presents abuf word mf*K + t and wbuf
//           word nf*K + t to os_array, which skews them
//   drain   ROWS cycles; drain cycle d writes the bottom row, Y[m0+ROWS-1-d, n0 .. n0+nt-1], to
//           obuf word nf*M + m0+ROWS-1-d (rows >= mt are not written) while zeros enter the top
// `cycles` counts every cycle from start to done: the sum over folds of K + mt + nt - 2 + ROWS,
// plus ROWS per fold with `accumulate`. `done` rises with the edge that writes the last output
// and stays high until the next start. A start with M, K or N equal to 0 finishes at once with
// 0 cycles.
`timescale 1ns / 1ps
`default_nettype none

module array_os #(
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
    localparam integer TW = ADDR_BITS + 2;          // step counter and dimension arithmetic
    localparam [TW-1:0] ROWS_T = ROWS[TW-1:0];
    localparam [TW-1:0] COLS_T = COLS[TW-1:0];
    localparam [TW-1:0] THREE_T = 3;
    localparam [1:0] S_IDLE = 2'd0, S_LOAD = 2'd1, S_STREAM = 2'd2, S_DRAIN = 2'd3;

    reg [ROWS*A_BITS-1:0] abuf [0:DEPTH-1];
    reg [COLS*W_BITS-1:0] wbuf [0:DEPTH-1];

    reg [1:0]           state;
    reg [TW-1:0]        m_q, k_q, n_q;      // GEMM dimensions
    reg                 acc_q;              // every fold first loads C from obuf
    reg [TW-1:0]        m0, n0;             // first row and first column of the fold's Y tile
    reg [TW-1:0]        step;               // load cycle i, stream cycle t or drain cycle d
    reg [ADDR_BITS-1:0] a_base, w_base;     // mf*K, nf*K
    reg [ADDR_BITS-1:0] on_base;            // nf*M

    wire [TW-1:0] m_rem = m_q - m0;
    wire [TW-1:0] n_rem = n_q - n0;
    wire [TW-1:0] mt = (m_rem > ROWS_T) ? ROWS_T : m_rem;
    wire [TW-1:0] nt = (n_rem > COLS_T) ? COLS_T : n_rem;
    wire [TW-1:0] t_last = k_q + mt + nt - THREE_T;
    wire          last_m = (m0 + ROWS_T >= m_q);
    wire          last_n = (n0 + COLS_T >= n_q);
    wire          loading = (state == S_LOAD);
    wire          streaming = (state == S_STREAM);
    wire          draining = (state == S_DRAIN);
    wire          feed = streaming && (step < k_q);            // a K step enters the array
    wire [TW-1:0] row = ROWS_T - 1'b1 - step;                  // tile row of a load or drain cycle
    wire          row_used = (row < mt);
    wire          kick = (state == S_IDLE) && start;
    wire          zero_dim = (m_rows == {ADDR_BITS{1'b0}}) || (k_depth == {ADDR_BITS{1'b0}})
                           || (n_cols == {ADDR_BITS{1'b0}});

    wire [ADDR_BITS-1:0] a_rd = a_base + step[ADDR_BITS-1:0];
    wire [ADDR_BITS-1:0] w_rd = w_base + step[ADDR_BITS-1:0];
    wire [ADDR_BITS-1:0] o_row = on_base + m0[ADDR_BITS-1:0] + row[ADDR_BITS-1:0];

    wire [ROWS*A_BITS-1:0]   a_word = abuf[a_rd];
    wire [COLS*W_BITS-1:0]   w_word = wbuf[w_rd];
    wire [ROWS*A_BITS-1:0]   a_left;
    wire [COLS*W_BITS-1:0]   w_top;
    wire [COLS*ACC_BITS-1:0] acc_top;
    wire [COLS*ACC_BITS-1:0] y;

    assign busy = (state != S_IDLE);

    os_array #(
        .ROWS(ROWS), .COLS(COLS), .A_BITS(A_BITS), .W_BITS(W_BITS), .ACC_BITS(ACC_BITS),
        .A_SIGNED(A_SIGNED), .W_SIGNED(W_SIGNED), .SATURATE(SATURATE), .CNT_BITS(CNT_BITS)
    ) u_array (
        .clk(clk), .rst(rst), .clr(kick), .shift(loading || draining),
        .a_left(a_left), .w_top(w_top), .acc_top(acc_top),
        .y(y), .ovf(ovf), .ovf_count(ovf_count)
    );

    // Host writes to abuf and wbuf.
    always @(posedge clk) begin
        if (a_we && !busy) abuf[a_addr] <= a_wdata;
        if (w_we && !busy) wbuf[w_addr] <= w_wdata;
    end

    // Operands of a stream cycle; rows past mt and columns past nt get 0, whatever the buffer holds.
    genvar r, c;
    generate
        for (r = 0; r < ROWS; r = r + 1) begin : g_a
            localparam [TW-1:0] RIDX = r;
            assign a_left[r*A_BITS +: A_BITS] = (feed && RIDX < mt) ? a_word[r*A_BITS +: A_BITS]
                                                                     : {A_BITS{1'b0}};
        end
        for (c = 0; c < COLS; c = c + 1) begin : g_w
            localparam [TW-1:0] CIDX = c;
            assign w_top[c*W_BITS +: W_BITS] = (feed && CIDX < nt) ? w_word[c*W_BITS +: W_BITS]
                                                                    : {W_BITS{1'b0}};
        end
    endgenerate

    // Output buffer: one bank per column, so that a drain cycle writes only the fold's nt columns.
    generate
        for (c = 0; c < COLS; c = c + 1) begin : g_obuf
            localparam [TW-1:0] CIDX = c;
            reg [ACC_BITS-1:0] bank [0:DEPTH-1];
            wire               used = row_used && (CIDX < nt);
            wire               wr = draining && used;
            always @(posedge clk) begin
                if (wr) bank[o_row] <= y[c*ACC_BITS +: ACC_BITS];
                else if (o_we && !busy) bank[o_addr] <= o_wdata[c*ACC_BITS +: ACC_BITS];
            end
            assign acc_top[c*ACC_BITS +: ACC_BITS] = (loading && used) ? bank[o_row] : {ACC_BITS{1'b0}};
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
                    m_q     <= {2'b00, m_rows};
                    k_q     <= {2'b00, k_depth};
                    n_q     <= {2'b00, n_cols};
                    acc_q   <= accumulate;
                    m0      <= {TW{1'b0}};
                    n0      <= {TW{1'b0}};
                    a_base  <= {ADDR_BITS{1'b0}};
                    w_base  <= {ADDR_BITS{1'b0}};
                    on_base <= {ADDR_BITS{1'b0}};
                    step    <= {TW{1'b0}};
                    cycles  <= {CYC_BITS{1'b0}};
                    done    <= zero_dim;
                    state   <= zero_dim ? S_IDLE : (accumulate ? S_LOAD : S_STREAM);
                end
                S_LOAD: begin
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
                        step  <= {TW{1'b0}};
                        state <= S_DRAIN;
                    end else begin
                        step <= step + 1'b1;
                    end
                end
                S_DRAIN: begin
                    cycles <= cycles + 1'b1;
                    if (step == ROWS_T - 1'b1) begin
                        step <= {TW{1'b0}};
                        if (last_m) begin
                            m0      <= {TW{1'b0}};
                            a_base  <= {ADDR_BITS{1'b0}};
                            n0      <= n0 + COLS_T;
                            w_base  <= w_base + k_q[ADDR_BITS-1:0];
                            on_base <= on_base + m_q[ADDR_BITS-1:0];
                        end else begin
                            m0     <= m0 + ROWS_T;
                            a_base <= a_base + k_q[ADDR_BITS-1:0];
                        end
                        if (last_m && last_n) begin
                            done  <= 1'b1;
                            state <= S_IDLE;
                        end else begin
                            state <= acc_q ? S_LOAD : S_STREAM;
                        end
                    end else begin
                        step <= step + 1'b1;
                    end
                end
                default: state <= S_IDLE;
            endcase
        end
    end

    wire unused_ok = &{1'b0, m_q[TW-1:ADDR_BITS], k_q[TW-1:ADDR_BITS], m0[TW-1:ADDR_BITS],
                       step[TW-1:ADDR_BITS], row[TW-1:ADDR_BITS]};
endmodule

`default_nettype wire
