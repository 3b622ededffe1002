// array_top: the MAC array with its buffers, one GEMM from start to done, in the dataflow DATAFLOW.
//
// Place in the flow: the top that rtl_models/tb_array_top.py drives with a vector set of
// `hwsim vectors` (whose hardware YAML gives DATAFLOW: hwsim.hwconfig.verilog_parameters); one
// port interface for every dataflow, documented in docs/rtl.md. DATAFLOW is the index of the
// dataflow in hwsim.dataflows.DATAFLOWS:
//   0  ws  weight-stationary: array_ws (systolic_array of mac_pe)
//   1  os  output-stationary: array_os (os_array of os_pe)
//   2  is  input-stationary:  array_ws with the operands swapped, Y^T = W^T * A^T (as hwsim's
//          register-level model runs it): the stationary tiles are A^T's, the streamed rows W^T's,
//          so the activation buffer is COLS codes wide and the weight buffer ROWS codes wide
// Each dataflow's buffer layout and fold order are in its module's header and in docs/rtl.md.
`timescale 1ns / 1ps
`default_nettype none

module array_top #(
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
    parameter integer ADDR_BITS = 12,
    parameter integer DATAFLOW  = 0
) (
    input  wire                                          clk,
    input  wire                                          rst,
    // host access to the buffers (ignored while busy)
    input  wire                                          a_we,
    input  wire [ADDR_BITS-1:0]                          a_addr,
    input  wire [((DATAFLOW == 2) ? COLS : ROWS)*A_BITS-1:0] a_wdata,
    input  wire                                          w_we,
    input  wire [ADDR_BITS-1:0]                          w_addr,
    input  wire [((DATAFLOW == 2) ? ROWS : COLS)*W_BITS-1:0] w_wdata,
    input  wire                                          o_we,
    input  wire [ADDR_BITS-1:0]                          o_addr,
    input  wire [COLS*ACC_BITS-1:0]                      o_wdata,
    output wire [COLS*ACC_BITS-1:0]                      o_rdata,
    // run control
    input  wire                                          start,
    input  wire                                          accumulate,
    input  wire [ADDR_BITS-1:0]                          m_rows,
    input  wire [ADDR_BITS-1:0]                          k_depth,
    input  wire [ADDR_BITS-1:0]                          n_cols,
    output wire                                          busy,
    output wire                                          done,
    output wire [CYC_BITS-1:0]                           cycles,
    output wire                                          ovf,
    output wire [CNT_BITS-1:0]                           ovf_count
);
    generate
        if (DATAFLOW == 0) begin : g_ws
            array_ws #(
                .ROWS(ROWS), .COLS(COLS), .A_BITS(A_BITS), .W_BITS(W_BITS), .ACC_BITS(ACC_BITS),
                .A_SIGNED(A_SIGNED), .W_SIGNED(W_SIGNED), .SATURATE(SATURATE), .CNT_BITS(CNT_BITS),
                .CYC_BITS(CYC_BITS), .ADDR_BITS(ADDR_BITS)
            ) u_core (
                .clk(clk), .rst(rst),
                .a_we(a_we), .a_addr(a_addr), .a_wdata(a_wdata),
                .w_we(w_we), .w_addr(w_addr), .w_wdata(w_wdata),
                .o_we(o_we), .o_addr(o_addr), .o_wdata(o_wdata), .o_rdata(o_rdata),
                .start(start), .accumulate(accumulate),
                .m_rows(m_rows), .k_depth(k_depth), .n_cols(n_cols),
                .busy(busy), .done(done), .cycles(cycles), .ovf(ovf), .ovf_count(ovf_count)
            );
        end else if (DATAFLOW == 1) begin : g_os
            array_os #(
                .ROWS(ROWS), .COLS(COLS), .A_BITS(A_BITS), .W_BITS(W_BITS), .ACC_BITS(ACC_BITS),
                .A_SIGNED(A_SIGNED), .W_SIGNED(W_SIGNED), .SATURATE(SATURATE), .CNT_BITS(CNT_BITS),
                .CYC_BITS(CYC_BITS), .ADDR_BITS(ADDR_BITS)
            ) u_core (
                .clk(clk), .rst(rst),
                .a_we(a_we), .a_addr(a_addr), .a_wdata(a_wdata),
                .w_we(w_we), .w_addr(w_addr), .w_wdata(w_wdata),
                .o_we(o_we), .o_addr(o_addr), .o_wdata(o_wdata), .o_rdata(o_rdata),
                .start(start), .accumulate(accumulate),
                .m_rows(m_rows), .k_depth(k_depth), .n_cols(n_cols),
                .busy(busy), .done(done), .cycles(cycles), .ovf(ovf), .ovf_count(ovf_count)
            );
        end else if (DATAFLOW == 2) begin : g_is
            // The weight-stationary core on the transposed GEMM: its streamed operand (its "A") is
            // W^T, held in this top's weight buffer, its stationary one A^T, in the activation buffer.
            array_ws #(
                .ROWS(ROWS), .COLS(COLS), .A_BITS(W_BITS), .W_BITS(A_BITS), .ACC_BITS(ACC_BITS),
                .A_SIGNED(W_SIGNED), .W_SIGNED(A_SIGNED), .SATURATE(SATURATE), .CNT_BITS(CNT_BITS),
                .CYC_BITS(CYC_BITS), .ADDR_BITS(ADDR_BITS)
            ) u_core (
                .clk(clk), .rst(rst),
                .a_we(w_we), .a_addr(w_addr), .a_wdata(w_wdata),
                .w_we(a_we), .w_addr(a_addr), .w_wdata(a_wdata),
                .o_we(o_we), .o_addr(o_addr), .o_wdata(o_wdata), .o_rdata(o_rdata),
                .start(start), .accumulate(accumulate),
                .m_rows(n_cols), .k_depth(k_depth), .n_cols(m_rows),
                .busy(busy), .done(done), .cycles(cycles), .ovf(ovf), .ovf_count(ovf_count)
            );
        end else begin : g_bad_dataflow
            // An unknown DATAFLOW stops elaboration (the module below does not exist).
            array_top_DATAFLOW_must_be_0_to_2 bad_dataflow ();
        end
    endgenerate
endmodule

`default_nettype wire
