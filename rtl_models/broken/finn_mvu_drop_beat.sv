// A deliberately broken wrapper of FINN's mvu_vvu_axi (rtl_models/third_party/finn_mvu, unmodified):
// the third output beat after reset is taken from the unit but never shown (a dropped beat).
// The verification kit must reject it (tests/rtl/test_kit.py).
module finn_mvu_drop_beat #(
	bit IS_MVU = 1,
	int unsigned VERSION = 2,
	int unsigned MW = 48,
	int unsigned MH = 16,
	int unsigned PE = 4,
	int unsigned SIMD = 8,
	int unsigned ACTIVATION_WIDTH = 11,
	int unsigned WEIGHT_WIDTH = 9,
	int unsigned ACCU_WIDTH = 24,
	bit SIGNED_ACTIVATIONS = 1,
	bit FORCE_BEHAVIORAL = 1,
	localparam int unsigned WB = (PE*SIMD*WEIGHT_WIDTH + 7)/8*8,
	localparam int unsigned IB = (SIMD*ACTIVATION_WIDTH + 7)/8*8,
	localparam int unsigned OB = (PE*ACCU_WIDTH + 7)/8*8
)(
	input	logic  ap_clk,
	input	logic  ap_clk2x,
	input	logic  ap_rst_n,
	input	logic [WB-1:0]  s_axis_weights_tdata,
	input	logic  s_axis_weights_tvalid,
	output	logic  s_axis_weights_tready,
	input	logic [IB-1:0]  s_axis_input_tdata,
	input	logic  s_axis_input_tvalid,
	output	logic  s_axis_input_tready,
	output	logic [OB-1:0]  m_axis_output_tdata,
	output	logic  m_axis_output_tvalid,
	input	logic  m_axis_output_tready
);
	logic [31:0]  taken;
	logic  inner_valid;
	uwire  drop = taken == 2;

	mvu_vvu_axi #(
		.IS_MVU(IS_MVU), .VERSION(VERSION), .MW(MW), .MH(MH), .PE(PE), .SIMD(SIMD),
		.ACTIVATION_WIDTH(ACTIVATION_WIDTH), .WEIGHT_WIDTH(WEIGHT_WIDTH), .ACCU_WIDTH(ACCU_WIDTH),
		.SIGNED_ACTIVATIONS(SIGNED_ACTIVATIONS), .FORCE_BEHAVIORAL(FORCE_BEHAVIORAL)
	) unit (
		.ap_clk, .ap_clk2x, .ap_rst_n,
		.s_axis_weights_tdata, .s_axis_weights_tvalid, .s_axis_weights_tready,
		.s_axis_input_tdata, .s_axis_input_tvalid, .s_axis_input_tready,
		.m_axis_output_tdata, .m_axis_output_tvalid(inner_valid), .m_axis_output_tready(m_axis_output_tready || drop)
	);
	assign m_axis_output_tvalid = inner_valid && !drop;

	always_ff @(posedge ap_clk) begin
		if (!ap_rst_n)  taken <= 0;
		else if (inner_valid && (m_axis_output_tready || drop))  taken <= taken + 1;
	end
endmodule
