// A small valid/ready/last dot-product stream: the tests' own design for the kit's stream driver
// where the foreign ones have no tlast and a fixed K. y = sum over one packet of a[k] * w[k]:
// unsigned activations, signed weights, a wrapping ACC_BITS accumulator; a and w beats are taken
// in pairs, the packet ends with a_tlast, and a result waiting for y_tready holds the inputs.
// Built with EXTRA_BEAT defined it is deliberately broken: every result goes out twice.
module stream_dot #(
    parameter A_BITS = 8,
    parameter W_BITS = 8,
    parameter ACC_BITS = 24
) (
    input clk,
    input rst,
    input [A_BITS-1:0] a_tdata,
    input a_tvalid,
    input a_tlast,
    output a_tready,
    input [W_BITS-1:0] w_tdata,
    input w_tvalid,
    input w_tlast,
    output w_tready,
    output reg [ACC_BITS-1:0] y_tdata,
    output reg y_tvalid,
    input y_tready
);
    reg signed [ACC_BITS-1:0] acc;
    reg again;  // EXTRA_BEAT: the next handshake repeats the result
    wire take = a_tvalid && w_tvalid && !(y_tvalid && !y_tready);
    wire signed [ACC_BITS-1:0] product = $signed({1'b0, a_tdata}) * $signed(w_tdata);
    wire signed [ACC_BITS-1:0] sum = acc + product;
    assign a_tready = take;
    assign w_tready = take;
    always @(posedge clk) begin
        if (rst) begin
            acc <= 0;
            y_tvalid <= 0;
            y_tdata <= 0;
            again <= 0;
        end else begin
            if (y_tvalid && y_tready) begin
`ifdef EXTRA_BEAT
                again <= !again;
                y_tvalid <= !again;
`else
                y_tvalid <= 0;
`endif
            end
            if (take && a_tlast) begin
                y_tdata <= sum;
                y_tvalid <= 1;
                acc <= 0;
            end else if (take) begin
                acc <= sum;
            end
        end
    end
endmodule
