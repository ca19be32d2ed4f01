// The importer on tiny hand-built graphs: shapes, roles, ordering, scopes, the streaming reader
// (weights never loaded, files over 2 GiB) and one clear error for each kind of bad input.
// Every expected value is worked out by hand in the test.
#include "importer/importer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "importer/validate.h"
#include "tests/model_builder.h"

using namespace vramsim;
using vramsim::testing::Dim;
using vramsim::testing::Int64Tensor;
using vramsim::testing::ModelBuilder;
using vramsim::testing::TempDir;

namespace {

constexpr int64_t kInt64Max = INT64_MAX;

// Through the byte reader, as a file would go.
Result<Graph> Import(const ModelBuilder& m, const ImportOptions& options = {}) {
  std::string bytes = m.Bytes();
  auto model = ReadModelFromBytes(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                  options.read);
  if (!model) return model.error();
  return ImportModelProto(std::move(model.value()), options);
}

ImportOptions Dims(std::map<std::string, int64_t> dims) {
  ImportOptions o;
  o.dims = std::move(dims);
  return o;
}

const Tensor* Find(const Graph& g, const std::string& name) {
  for (const Tensor& t : g.tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

TensorId IdOf(const Graph& g, const std::string& name) {
  for (size_t i = 0; i < g.tensors.size(); ++i) {
    if (g.tensors[i].name == name) return static_cast<TensorId>(i);
  }
  return kNoTensor;
}

using Shape = std::vector<int64_t>;

// Expects tensor `name` to have this dtype, shape and byte count.
void ExpectTensor(const Graph& g, const std::string& name, DType dtype, const Shape& shape,
                  uint64_t bytes) {
  const Tensor* t = Find(g, name);
  ASSERT_NE(t, nullptr) << name;
  EXPECT_EQ(t->dtype, dtype) << name;
  EXPECT_EQ(t->shape, shape) << name;
  EXPECT_EQ(t->bytes, bytes) << name;
}

// Expects an import error whose message contains every one of `parts`.
void ExpectError(const Result<Graph>& r, const std::vector<std::string>& parts) {
  ASSERT_FALSE(r.ok()) << "import succeeded, expected an error naming " << parts[0];
  const std::string& msg = r.error().message;
  for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg << "\nlacks " << p;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "multi-line message: " << msg;
}

// ---------------------------------------------------------------------------------------------
// Shapes

TEST(ImporterShapes, ConvReluConvFlattenGemmWithBoundBatch) {
  ModelBuilder m(17);
  m.Input("x", DType::kFloat32, {"batch", 3, 32, 32});
  m.Initializer("conv1.weight", DType::kFloat32, {16, 3, 3, 3});
  m.Initializer("conv1.bias", DType::kFloat32, {16});
  m.Initializer("conv2.weight", DType::kFloat32, {32, 16, 3, 3});
  m.Initializer("fc.weight", DType::kFloat32, {10, 7200});
  m.Initializer("fc.bias", DType::kFloat32, {10});
  m.Node("Conv", {"x", "conv1.weight", "conv1.bias"}, {"c1"}, "/conv1/Conv")
      .Ints("kernel_shape", {3, 3});
  m.Node("Relu", {"c1"}, {"r1"}, "/relu/Relu");
  m.Node("Conv", {"r1", "conv2.weight"}, {"c2"}, "/conv2/Conv")
      .Ints("kernel_shape", {3, 3})
      .Ints("strides", {2, 2})
      .Ints("pads", {1, 1, 1, 1});
  m.Node("Flatten", {"c2"}, {"f"}, "/Flatten").Int("axis", 1);
  m.Node("Gemm", {"f", "fc.weight", "fc.bias"}, {"logits"}, "/fc/Gemm").Int("transB", 1);
  m.Output("logits");

  auto g = Import(m, Dims({{"batch", 8}}));
  ASSERT_TRUE(g.ok()) << g.error().message;
  EXPECT_EQ(g->dims, (std::map<std::string, int64_t>{{"batch", 8}}));
  // x: 8*3*32*32 = 24576 floats = 98304 bytes.
  ExpectTensor(*g, "x", DType::kFloat32, {8, 3, 32, 32}, 98304);
  // conv1, 3x3 no padding: 32-3+1 = 30 -> [8,16,30,30] = 8*16*900 = 115200 floats = 460800 B.
  ExpectTensor(*g, "c1", DType::kFloat32, {8, 16, 30, 30}, 460800);
  ExpectTensor(*g, "r1", DType::kFloat32, {8, 16, 30, 30}, 460800);
  // conv2, 3x3 stride 2 pad 1: floor((30+2-3)/2)+1 = 15 -> [8,32,15,15] = 57600 floats.
  ExpectTensor(*g, "c2", DType::kFloat32, {8, 32, 15, 15}, 230400);
  // Flatten(axis 1): 32*15*15 = 7200.
  ExpectTensor(*g, "f", DType::kFloat32, {8, 7200}, 230400);
  // Gemm with transB: [8,7200] x [10,7200]^T = [8,10] = 80 floats = 320 bytes.
  ExpectTensor(*g, "logits", DType::kFloat32, {8, 10}, 320);
  // Weights: 16*3*3*3 = 432 floats = 1728 B; 10*7200 = 72000 floats = 288000 B.
  ExpectTensor(*g, "conv1.weight", DType::kFloat32, {16, 3, 3, 3}, 1728);
  ExpectTensor(*g, "fc.weight", DType::kFloat32, {10, 7200}, 288000);
  EXPECT_EQ(g->opset, 17);
  EXPECT_EQ(g->ops.size(), 5u);
}

TEST(ImporterShapes, BatchOfOneAndOtherBatchesScale) {
  ModelBuilder m(17);
  m.Input("x", DType::kFloat16, {"batch", 4});
  m.Node("Relu", {"x"}, {"y"});
  m.Output("y", DType::kFloat16);
  for (int64_t b : {1, 3, 64}) {
    auto g = Import(m, Dims({{"batch", b}}));
    ASSERT_TRUE(g.ok()) << g.error().message;
    // b*4 halves of 2 bytes.
    ExpectTensor(*g, "y", DType::kFloat16, {b, 4}, static_cast<uint64_t>(b * 4 * 2));
  }
}

// The transformer-export pattern: the Reshape target is computed from the input's shape.
TEST(ImporterShapes, ShapeGatherUnsqueezeConcatReshapeWithZeroAndMinusOne) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {"batch", "seq", 64});
  m.Int64Initializer("onnx::Gather_1", {}, {1});
  m.Int64Initializer("onnx::Unsqueeze_2", {1}, {0});
  m.Int64Initializer("onnx::Concat_zero", {1}, {0});
  m.Int64Initializer("onnx::Concat_minus1", {1}, {-1});
  m.Int64Initializer("onnx::Concat_16", {1}, {16});
  m.Int64Initializer("onnx::Reshape_flat", {2}, {0, -1});
  m.Node("Shape", {"x"}, {"s"}, "/attn/Shape");
  m.Node("Gather", {"s", "onnx::Gather_1"}, {"seq_len"}, "/attn/Gather").Int("axis", 0);
  m.Node("Unsqueeze", {"seq_len", "onnx::Unsqueeze_2"}, {"seq_1d"}, "/attn/Unsqueeze");
  m.Node("Concat", {"onnx::Concat_zero", "seq_1d", "onnx::Concat_minus1", "onnx::Concat_16"},
         {"target"}, "/attn/Concat")
      .Int("axis", 0);
  m.Node("Reshape", {"x", "target"}, {"heads"}, "/attn/Reshape");
  m.Node("Reshape", {"heads", "onnx::Reshape_flat"}, {"flat"}, "/attn/Reshape_1");
  m.Output("flat");

  auto g = Import(m, Dims({{"batch", 2}, {"seq", 5}}));
  ASSERT_TRUE(g.ok()) << g.error().message;
  const Tensor* s = Find(*g, "s");
  ASSERT_TRUE(s && s->value);
  EXPECT_EQ(s->shape, Shape{3});
  EXPECT_EQ(s->value->ints, (std::vector<int64_t>{2, 5, 64}));
  const Tensor* seq_len = Find(*g, "seq_len");
  ASSERT_TRUE(seq_len && seq_len->value);
  EXPECT_EQ(seq_len->shape, Shape{});  // Gather of a scalar index gives a scalar
  EXPECT_EQ(seq_len->value->ints, std::vector<int64_t>{5});
  const Tensor* target = Find(*g, "target");
  ASSERT_TRUE(target && target->value);
  EXPECT_EQ(target->value->ints, (std::vector<int64_t>{0, 5, -1, 16}));
  // [2,5,64] reshaped by [0,5,-1,16]: 0 copies 2, -1 = 640 / (2*5*16) = 4.
  ExpectTensor(*g, "heads", DType::kFloat32, {2, 5, 4, 16}, 2 * 5 * 4 * 16 * 4);
  // [2,5,4,16] by [0,-1]: [2, 320].
  ExpectTensor(*g, "flat", DType::kFloat32, {2, 320}, 2560);
}

// A causal-mask style chain: every op between the input's shape and the mask is evaluated.
TEST(ImporterShapes, ConstantOfShapeRangeExpandSliceEqualCastWhere) {
  ModelBuilder m(13);
  m.Input("ids", DType::kInt64, {"batch", "seq"});
  m.Int64Initializer("idx0", {}, {0});
  m.Int64Initializer("idx1", {}, {1});
  m.Int64Initializer("axes0", {1}, {0});
  m.Int64Initializer("start0", {}, {0});
  m.Int64Initializer("delta1", {}, {1});
  m.Int64Initializer("sl_starts", {1}, {0});
  m.Int64Initializer("sl_ends", {1}, {kInt64Max});
  m.Int64Initializer("sl_axes", {1}, {1});
  m.Int64Initializer("sl_steps", {1}, {2});
  m.Int64Initializer("four", {}, {4});
  m.FloatInitializer("onnx::Where_minus_one", {}, {-1.0f});  // exporter-made: a constant
  m.Node("Shape", {"ids"}, {"s"});
  m.Node("Gather", {"s", "idx0"}, {"b"});
  m.Node("Gather", {"s", "idx1"}, {"n"});
  m.Node("Unsqueeze", {"b", "axes0"}, {"b1"});
  m.Node("Unsqueeze", {"n", "axes0"}, {"n1"});
  m.Node("Range", {"start0", "n", "delta1"}, {"r"});
  m.Node("ConstantOfShape", {"n1"}, {"ones"}).Tensor("value", Int64Tensor("v", {1}, {1}));
  m.Node("Concat", {"b1", "n1"}, {"bn"}).Int("axis", 0);
  m.Node("Expand", {"r", "bn"}, {"e"});
  m.Node("Slice", {"e", "sl_starts", "sl_ends", "sl_axes", "sl_steps"}, {"sl"});
  m.Node("Equal", {"sl", "four"}, {"eq"});
  m.Node("Cast", {"eq"}, {"c"}).Int("to", 1);
  m.Node("Where", {"eq", "c", "onnx::Where_minus_one"}, {"w"});
  m.Node("Mul", {"r", "ones"}, {"r_times_ones"});
  m.Output("w");
  m.Output("r_times_ones", DType::kInt64);

  auto g = Import(m, Dims({{"batch", 3}, {"seq", 7}}));
  ASSERT_TRUE(g.ok()) << g.error().message;
  const Tensor* r = Find(*g, "r");
  ASSERT_TRUE(r && r->value);
  EXPECT_EQ(r->shape, Shape{7});
  EXPECT_EQ(r->value->ints, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}));
  const Tensor* ones = Find(*g, "ones");
  ASSERT_TRUE(ones && ones->value);
  EXPECT_EQ(ones->dtype, DType::kInt64);
  EXPECT_EQ(ones->shape, Shape{7});
  EXPECT_EQ(ones->value->ints, std::vector<int64_t>(7, 1));
  ExpectTensor(*g, "e", DType::kInt64, {3, 7}, 3 * 7 * 8);
  // Slice columns 0, 2, 4, 6 (step 2, end INT64_MAX clamped to 7): ceil(7/2) = 4.
  const Tensor* sl = Find(*g, "sl");
  ASSERT_TRUE(sl && sl->value);
  EXPECT_EQ(sl->shape, (Shape{3, 4}));
  EXPECT_EQ(sl->value->ints, (std::vector<int64_t>{0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6}));
  // == 4 at column 2 only; bool is 1 byte.
  const Tensor* eq = Find(*g, "eq");
  ASSERT_TRUE(eq && eq->value);
  ExpectTensor(*g, "eq", DType::kBool, {3, 4}, 12);
  EXPECT_EQ(eq->value->ints, (std::vector<int64_t>{0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0}));
  ExpectTensor(*g, "c", DType::kFloat32, {3, 4}, 48);
  const Tensor* w = Find(*g, "w");
  ASSERT_TRUE(w && w->value);
  ExpectTensor(*g, "w", DType::kFloat32, {3, 4}, 48);
  EXPECT_EQ(w->value->floats, (std::vector<double>{-1, -1, 1, -1, -1, -1, 1, -1, -1, -1, 1, -1}));
  ExpectTensor(*g, "r_times_ones", DType::kInt64, {7}, 56);
}

TEST(ImporterShapes, ReduceMeanWithAxesInputAtOpset21) {
  ModelBuilder m(21);
  m.Input("x", DType::kFloat32, {2, 3, 4});
  m.Int64Initializer("axes", {1}, {1});
  m.Int64Initializer("last", {1}, {-1});
  m.Node("ReduceMean", {"x", "axes"}, {"dropped"}, "/mean/ReduceMean").Int("keepdims", 0);
  m.Node("ReduceMean", {"x", "axes"}, {"kept"}, "/mean/ReduceMean_1");  // keepdims defaults to 1
  m.Node("ReduceMax", {"x", "last"}, {"mx"}, "/max/ReduceMax");
  m.Output("dropped");
  m.Output("kept");
  m.Output("mx");
  auto g = Import(m);
  ASSERT_TRUE(g.ok()) << g.error().message;
  ExpectTensor(*g, "dropped", DType::kFloat32, {2, 4}, 32);
  ExpectTensor(*g, "kept", DType::kFloat32, {2, 1, 4}, 32);
  ExpectTensor(*g, "mx", DType::kFloat32, {2, 3, 1}, 24);
}

TEST(ImporterShapes, GeluAtOpset20KeepsItsInputShape) {
  ModelBuilder m(20);
  m.Input("x", DType::kFloat32, {"batch", 7});
  m.Node("Gelu", {"x"}, {"y"}, "/mlp/act/Gelu").String("approximate", "tanh");
  m.Output("y");
  auto g = Import(m, Dims({{"batch", 4}}));
  ASSERT_TRUE(g.ok()) << g.error().message;
  ExpectTensor(*g, "y", DType::kFloat32, {4, 7}, 112);  // 28 floats
}

// ---------------------------------------------------------------------------------------------
// Roles

TEST(ImporterRoles, ParametersBuffersConstantsInputsOutputs) {
  ModelBuilder m(15);
  m.Input("x", DType::kFloat32, {2, 3, 4, 4});
  m.Initializer("conv.weight", DType::kFloat32, {3, 3, 1, 1});
  m.Initializer("bn.weight", DType::kFloat32, {3});
  m.Initializer("bn.bias", DType::kFloat32, {3});
  m.Initializer("bn.running_mean", DType::kFloat32, {3});
  m.Initializer("bn.running_var", DType::kFloat32, {3});
  m.Int64Initializer("onnx::Reshape_7", {2}, {2, -1});
  m.FloatInitializer("onnx::Mul_9", {}, {0.5f});
  m.Int64Initializer("position_ids", {1, 4}, {0, 1, 2, 3});
  m.Node("Conv", {"x", "conv.weight"}, {"c"}, "/conv/Conv");
  m.Node("BatchNormalization", {"c", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"},
         {"b"}, "/bn/BN");
  m.Node("Relu", {"b"}, {"r"}, "/relu/Relu");
  m.Node("Mul", {"r", "onnx::Mul_9"}, {"h"}, "/Mul");
  m.Node("Reshape", {"h", "onnx::Reshape_7"}, {"y"}, "/Reshape");
  m.Output("y");

  auto g = Import(m);
  ASSERT_TRUE(g.ok()) << g.error().message;
  auto role = [&](const std::string& n) {
    const Tensor* t = Find(*g, n);
    EXPECT_NE(t, nullptr) << n;
    return t ? t->role : TensorRole::kActivation;
  };
  EXPECT_EQ(role("x"), TensorRole::kDataInput);
  EXPECT_EQ(role("conv.weight"), TensorRole::kParameter);
  EXPECT_EQ(role("bn.weight"), TensorRole::kParameter);
  EXPECT_EQ(role("bn.bias"), TensorRole::kParameter);
  EXPECT_EQ(role("bn.running_mean"), TensorRole::kBuffer);
  EXPECT_EQ(role("bn.running_var"), TensorRole::kBuffer);
  EXPECT_EQ(role("onnx::Reshape_7"), TensorRole::kConstant);
  EXPECT_EQ(role("onnx::Mul_9"), TensorRole::kConstant);  // float, but exporter-made
  EXPECT_EQ(role("position_ids"), TensorRole::kBuffer);   // integer: not trainable
  EXPECT_EQ(role("c"), TensorRole::kActivation);
  EXPECT_EQ(role("b"), TensorRole::kActivation);
  EXPECT_EQ(role("r"), TensorRole::kActivation);
  EXPECT_EQ(role("y"), TensorRole::kGraphOutput);
  EXPECT_EQ(g->inputs, std::vector<TensorId>{IdOf(*g, "x")});
  EXPECT_EQ(g->outputs, std::vector<TensorId>{IdOf(*g, "y")});
  // y: 3*4*4 = 48 per sample.
  ExpectTensor(*g, "y", DType::kFloat32, {2, 48}, 2 * 48 * 4);
}

TEST(ImporterRoles, ConstantNodeOutputIsConstant) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {2, 6});
  m.Node("Constant", {}, {"shape"}).Tensor("value", Int64Tensor("", {2}, {3, 4}));
  m.Node("Reshape", {"x", "shape"}, {"y"});
  m.Output("y");
  auto g = Import(m);
  ASSERT_TRUE(g.ok()) << g.error().message;
  EXPECT_EQ(Find(*g, "shape")->role, TensorRole::kConstant);
  ExpectTensor(*g, "y", DType::kFloat32, {3, 4}, 48);
}

TEST(ImporterRoles, InitializerAlsoListedAsGraphInputStaysAParameter) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {2, 3});
  m.Input("w", DType::kFloat32, {3, 4});  // old exporters list initializers as inputs too
  m.Initializer("w", DType::kFloat32, {3, 4});
  m.Node("MatMul", {"x", "w"}, {"y"});
  m.Output("y");
  auto g = Import(m);
  ASSERT_TRUE(g.ok()) << g.error().message;
  EXPECT_EQ(Find(*g, "w")->role, TensorRole::kParameter);
  EXPECT_EQ(g->inputs, std::vector<TensorId>{IdOf(*g, "x")});
  size_t named_w = 0;
  for (const Tensor& t : g->tensors) named_w += t.name == "w";
  EXPECT_EQ(named_w, 1u);
  ExpectTensor(*g, "y", DType::kFloat32, {2, 4}, 32);
}

// ---------------------------------------------------------------------------------------------
// The streaming reader

TEST(ImporterReader, MissingExternalDataFileImportsWithDimsAndDtype) {
  TempDir dir;
  ModelBuilder m(17);
  m.Input("x", DType::kFloat16, {2, 1024});
  // 1024*4096 halves = 8388608 bytes, in a file that does not exist.
  m.ExternalInitializer("proj.weight", DType::kFloat16, {1024, 4096}, "weights.bin", 8388608);
  m.Node("MatMul", {"x", "proj.weight"}, {"y"});
  m.Output("y", DType::kFloat16);
  std::string path = dir.Write("model.onnx", m);
  auto g = ImportModel(path);
  ASSERT_TRUE(g.ok()) << g.error().message;
  ExpectTensor(*g, "proj.weight", DType::kFloat16, {1024, 4096}, 8388608);
  EXPECT_EQ(Find(*g, "proj.weight")->role, TensorRole::kParameter);
  ExpectTensor(*g, "y", DType::kFloat16, {2, 4096}, 16384);
}

TEST(ImporterReader, LargeInlinePayloadIsSkippedSmallOneKept) {
  TempDir dir;
  constexpr uint64_t kBytes = 64ull << 20;  // 4096*4096 floats * 4 bytes = 67108864
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {2, 4096});
  onnx::TensorProto big = vramsim::testing::TensorOf("big", DType::kFloat32, {4096, 4096});
  big.set_raw_data(std::string(kBytes, '\x3f'));
  m.Initializer(big);
  // A small shape constant in raw_data (16 bytes) is kept: the Reshape target needs it.
  m.Initializer(vramsim::testing::RawTensor<int64_t>("target", DType::kInt64, {2}, {4, -1}));
  m.Node("MatMul", {"x", "big"}, {"h"});
  m.Node("Reshape", {"h", "target"}, {"y"});
  m.Output("y");
  std::string path = dir.Write("model.onnx", m);

  auto model = ReadModel(path);
  ASSERT_TRUE(model.ok()) << model.error().message;
  ASSERT_EQ(model->graph().initializer_size(), 2);
  const auto& init = model->graph().initializer(0);
  EXPECT_EQ(init.name(), "big");
  EXPECT_FALSE(init.has_raw_data());
  EXPECT_TRUE(init.raw_data().empty());
  EXPECT_EQ(std::vector<int64_t>(init.dims().begin(), init.dims().end()), (Shape{4096, 4096}));
  EXPECT_EQ(init.data_type(), onnx::TensorProto::FLOAT);
  EXPECT_EQ(model->graph().initializer(1).raw_data().size(), 16u);

  auto g = ImportModel(path);
  ASSERT_TRUE(g.ok()) << g.error().message;
  ExpectTensor(*g, "big", DType::kFloat32, {4096, 4096}, kBytes);
  EXPECT_FALSE(Find(*g, "big")->value.has_value());
  // h = [2,4096]; [4,-1] -> [4, 8192/4 = 2048].
  ExpectTensor(*g, "y", DType::kFloat32, {4, 2048}, 32768);
}

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}
std::string LengthTag(uint32_t field, uint64_t length) {
  std::string s;
  PutVarint(&s, (static_cast<uint64_t>(field) << 3) | 2);
  PutVarint(&s, length);
  return s;
}

// ModelProto { ir_version, opset_import, graph { initializer { dims, data_type, name,
// raw_data: 2.25 GiB of zeros as a hole }, node, input, output }, producer_name } written on
// the wire level, so no protobuf message ever holds the payload.
TEST(ImporterReader, FileOver2GiBWithHugeInitializerAsSparseFile) {
  // [576,1024,1024] floats: 603979776 * 4 = 2415919104 bytes = 2.25 GiB > 2^31.
  const Shape big_dims = {576, 1024, 1024};
  const uint64_t payload = 2415919104ull;

  onnx::ModelProto head;
  head.set_ir_version(8);
  head.add_opset_import()->set_version(17);
  onnx::TensorProto init = vramsim::testing::TensorOf("big", DType::kFloat32, big_dims);
  onnx::GraphProto rest;
  rest.set_name("huge");
  auto* node = rest.add_node();
  node->set_op_type("MatMul");
  node->set_name("/MatMul");
  node->add_input("x");
  node->add_input("big");
  node->add_output("y");
  auto* in = rest.add_input();
  in->set_name("x");
  in->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
  in->mutable_type()->mutable_tensor_type()->mutable_shape()->add_dim()->set_dim_value(2);
  in->mutable_type()->mutable_tensor_type()->mutable_shape()->add_dim()->set_dim_value(1024);
  rest.add_output()->set_name("y");
  onnx::ModelProto tail;
  tail.set_producer_name("after-the-payload");

  std::string init_head = init.SerializeAsString() + LengthTag(9, payload);
  uint64_t init_len = init_head.size() + payload;
  std::string init_tag = LengthTag(5, init_len);
  std::string rest_bytes = rest.SerializeAsString();
  uint64_t graph_len = init_tag.size() + init_len + rest_bytes.size();
  std::string prefix = head.SerializeAsString() + LengthTag(7, graph_len) + init_tag + init_head;
  std::string suffix = rest_bytes + tail.SerializeAsString();
  uint64_t total = prefix.size() + payload + suffix.size();

  TempDir dir;
  struct statvfs fs {};
  if (::statvfs(dir.path().c_str(), &fs) != 0 ||
      static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize < total + (64ull << 20)) {
    GTEST_SKIP() << "temporary filesystem lacks " << total << " bytes of space";
  }
  std::string path = dir.File("huge.onnx");
  int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  bool written =
      ::pwrite(fd, prefix.data(), prefix.size(), 0) == static_cast<ssize_t>(prefix.size()) &&
      ::ftruncate(fd, static_cast<off_t>(prefix.size() + payload)) == 0 &&
      ::pwrite(fd, suffix.data(), suffix.size(), static_cast<off_t>(prefix.size() + payload)) ==
          static_cast<ssize_t>(suffix.size());
  int err = errno;
  ::close(fd);
  if (!written) GTEST_SKIP() << "cannot write a sparse file: " << std::strerror(err);

  auto model = ReadModel(path);
  ASSERT_TRUE(model.ok()) << model.error().message;
  EXPECT_EQ(model->producer_name(), "after-the-payload");
  ASSERT_EQ(model->graph().initializer_size(), 1);
  EXPECT_TRUE(model->graph().initializer(0).raw_data().empty());
  EXPECT_EQ(model->graph().node_size(), 1);

  auto g = ImportModel(path);
  ASSERT_TRUE(g.ok()) << g.error().message;
  ExpectTensor(*g, "big", DType::kFloat32, big_dims, payload);
  EXPECT_EQ(Find(*g, "big")->role, TensorRole::kParameter);
  // [2,1024] x [576,1024,1024] broadcasts to [576,2,1024] = 1179648 floats = 4718592 bytes.
  ExpectTensor(*g, "y", DType::kFloat32, {576, 2, 1024}, 4718592);
}

// ---------------------------------------------------------------------------------------------
// Order, scopes, dataflow

TEST(ImporterGraph, NodesOutOfOrderInTheFileAreScheduled) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {4});
  m.Node("Relu", {"t"}, {"y"}, "/b/Relu");        // reads t, listed first
  m.Node("Sigmoid", {"x"}, {"t"}, "/a/Sigmoid");  // produces t
  m.Output("y");
  auto g = Import(m);
  ASSERT_TRUE(g.ok()) << g.error().message;
  ASSERT_EQ(g->ops.size(), 2u);
  EXPECT_EQ(g->ops[0].name, "/a/Sigmoid");
  EXPECT_EQ(g->ops[1].name, "/b/Relu");
  const Tensor* t = Find(*g, "t");
  EXPECT_EQ(t->producer, 0);
  EXPECT_EQ(t->consumers, std::vector<OpId>{1});
  EXPECT_EQ(Find(*g, "y")->producer, 1);
  EXPECT_EQ(Find(*g, "x")->consumers, std::vector<OpId>{0});
  EXPECT_EQ(g->ops[0].outputs, std::vector<TensorId>{IdOf(*g, "t")});
  EXPECT_EQ(g->ops[1].inputs, std::vector<TensorId>{IdOf(*g, "t")});
  ExpectTensor(*g, "y", DType::kFloat32, {4}, 16);
}

TEST(ImporterGraph, AnOpReadingATensorTwiceIsItsConsumerTwice) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {4});
  m.Node("Mul", {"x", "x"}, {"y"});
  m.Output("y");
  auto g = Import(m);
  ASSERT_TRUE(g.ok()) << g.error().message;
  EXPECT_EQ(Find(*g, "x")->consumers, (std::vector<OpId>{0, 0}));
}

TEST(ImporterGraph, ScopeAndModuleFromNodeNames) {
  struct Case {
    std::string name, scope, module;
  };
  const std::vector<Case> cases = {
      {"/layer1/layer1.0/conv1/Conv", "/layer1/layer1.0/conv1/", "layer1.0.conv1"},
      {"/features/features.3/conv/conv.0/conv.0.0/Conv",
       "/features/features.3/conv/conv.0/conv.0.0/", "features.3.conv.0.0"},
      {"/h.0/attn/c_attn/MatMul", "/h.0/attn/c_attn/", "h.0.attn.c_attn"},
      {"/Flatten", "/", ""},
      {"Relu_3", "", ""},
      {"", "", ""},
  };
  for (const Case& c : cases) {
    std::string scope = "stale", module = "stale";
    SplitScope(c.name, &scope, &module);
    EXPECT_EQ(scope, c.scope) << c.name;
    EXPECT_EQ(module, c.module) << c.name;
  }
  // And as the importer records them on ops.
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {4});
  std::string prev = "x";
  for (size_t i = 0; i < 3; ++i) {
    std::string out = "t";
    out += std::to_string(i);
    m.Node("Relu", {prev}, {out}, cases[i].name);
    prev = out;
  }
  m.Output(prev);
  auto g = Import(m);
  ASSERT_TRUE(g.ok()) << g.error().message;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(g->ops[i].scope, cases[i].scope);
    EXPECT_EQ(g->ops[i].module, cases[i].module);
  }
}

TEST(ImporterGraph, DataflowOfATwoNodeChain) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {4});
  m.Node("Relu", {"x"}, {"t"}, "A");
  m.Node("Sigmoid", {"t"}, {"y"}, "B");
  m.Output("y");
  auto g = Import(m);
  ASSERT_TRUE(g.ok()) << g.error().message;
  const Dataflow& df = *g->dataflow;
  // 2 ops + 3 tensors (x, t, y).
  ASSERT_EQ(g->ops.size(), 2u);
  ASSERT_EQ(g->tensors.size(), 3u);
  EXPECT_EQ(boost::num_vertices(df), 5u);
  // x -> A -> t -> B -> y.
  EXPECT_EQ(boost::num_edges(df), 4u);
  size_t a = g->op_vertex(0), b = g->op_vertex(1);
  size_t x = g->tensor_vertex(IdOf(*g, "x")), t = g->tensor_vertex(IdOf(*g, "t")),
         y = g->tensor_vertex(IdOf(*g, "y"));
  EXPECT_TRUE(boost::edge(x, a, df).second);
  EXPECT_TRUE(boost::edge(a, t, df).second);
  EXPECT_TRUE(boost::edge(t, b, df).second);
  EXPECT_TRUE(boost::edge(b, y, df).second);
  EXPECT_FALSE(boost::edge(a, b, df).second);
  EXPECT_FALSE(boost::edge(t, a, df).second);
  EXPECT_TRUE(df[a].is_op);
  EXPECT_EQ(df[a].index, 0);
  EXPECT_TRUE(df[b].is_op);
  EXPECT_EQ(df[b].index, 1);
  EXPECT_FALSE(df[t].is_op);
  EXPECT_EQ(df[t].index, IdOf(*g, "t"));
  EXPECT_EQ(boost::in_degree(x, df), 0u);
  EXPECT_EQ(boost::out_degree(y, df), 0u);
}

// ---------------------------------------------------------------------------------------------
// Bad input: one clear error each, never a crash

ModelBuilder SmallValidModel() {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {"batch", 3, 8, 8});
  m.FloatInitializer("w", {4, 3, 1, 1}, std::vector<float>(12, 0.5f));
  m.Int64Initializer("onnx::Reshape_1", {2}, {0, -1});
  m.Node("Conv", {"x", "w"}, {"c"}, "/conv/Conv");
  m.Node("Relu", {"c"}, {"r"}, "/relu/Relu");
  m.Node("Reshape", {"r", "onnx::Reshape_1"}, {"y"}, "/Reshape");
  m.Output("y");
  return m;
}

TEST(ImporterBadInput, EmptyFile) {
  TempDir dir;
  auto g = ImportModel(dir.Write("empty.onnx", ""));
  ExpectError(g, {"empty"});
  auto r = ReadModelFromBytes(nullptr, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("empty"), std::string::npos);
}

TEST(ImporterBadInput, MissingFileAndDirectory) {
  TempDir dir;
  ExpectError(ImportModel(dir.File("nope.onnx")), {"nope.onnx"});
  ExpectError(ImportModel(dir.path().string()), {"not a regular file"});
}

TEST(ImporterBadInput, EveryTruncationOfASmallModelFailsCleanlyOrImports) {
  std::string bytes = SmallValidModel().Bytes();
  ImportOptions options = Dims({{"batch", 2}});
  {
    auto full = ReadModelFromBytes(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    ASSERT_TRUE(full.ok()) << full.error().message;
    auto g = ImportModelProto(std::move(full.value()), options);
    ASSERT_TRUE(g.ok()) << g.error().message;
    ExpectTensor(*g, "y", DType::kFloat32, {2, 256}, 2048);  // 4*8*8 = 256 per sample
  }
  size_t errors = 0;
  for (size_t n = 0; n < bytes.size(); ++n) {
    // An exact-size heap copy, so a read past the end is caught by ASan.
    std::unique_ptr<uint8_t[]> buf(new uint8_t[n ? n : 1]);
    std::memcpy(buf.get(), bytes.data(), n);
    auto model = ReadModelFromBytes(buf.get(), n);
    if (!model) {
      ++errors;
      EXPECT_FALSE(model.error().message.empty()) << n;
      continue;
    }
    auto g = ImportModelProto(std::move(model.value()), options);
    if (!g) {
      ++errors;
      EXPECT_FALSE(g.error().message.empty()) << n;
    }
  }
  // Nearly every prefix cuts a field or drops the graph.
  EXPECT_GT(errors, bytes.size() / 2);
  // And through a file.
  TempDir dir;
  auto g = ImportModel(dir.Write("cut.onnx", bytes.substr(0, bytes.size() / 2)), options);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.error().message.find("cut.onnx"), std::string::npos) << g.error().message;
}

TEST(ImporterBadInput, RandomGarbageBytes) {
  std::mt19937_64 rng(20240521);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<size_t> len(1, 4096);
  for (int k = 0; k < 300; ++k) {
    size_t n = len(rng);
    std::unique_ptr<uint8_t[]> buf(new uint8_t[n]);
    for (size_t i = 0; i < n; ++i) buf[i] = static_cast<uint8_t>(byte(rng));
    auto model = ReadModelFromBytes(buf.get(), n);
    if (model) {
      auto g = ImportModelProto(std::move(model.value()));
      EXPECT_FALSE(g.ok()) << "garbage #" << k << " imported";
      continue;
    }
    EXPECT_NE(model.error().message.find("ONNX model"), std::string::npos) << model.error().message;
  }
  TempDir dir;
  std::string garbage;
  for (int i = 0; i < 1000; ++i) garbage.push_back(static_cast<char>(byte(rng)));
  ExpectError(ImportModel(dir.Write("garbage.onnx", garbage)), {"garbage.onnx", "ONNX model"});
}

TEST(ImporterBadInput, TextFile) {
  TempDir dir;
  // The text format of a model: a common mistake, and not the binary format.
  std::string text = "ir_version: 8\nopset_import { version: 17 }\ngraph { name: \"g\" }\n";
  ExpectError(ImportModel(dir.Write("model.txt", text)), {"model.txt", "not a valid ONNX model"});
}

TEST(ImporterBadInput, NegativeDimInInitializer) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {3});
  m.Initializer("bad.weight", DType::kFloat32, {3, -1});
  m.Node("Relu", {"x"}, {"y"});
  m.Output("y");
  ExpectError(Import(m), {"'bad.weight'", "negative"});
}

TEST(ImporterBadInput, NegativeDimInInput) {
  ModelBuilder m(13);
  m.Input("pixels", DType::kFloat32, {2, -4});
  m.Node("Relu", {"pixels"}, {"y"});
  m.Output("y");
  ExpectError(Import(m), {"'pixels'", "negative"});
}

TEST(ImporterBadInput, DimsWhoseByteCountOverflows64Bits) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {3});
  // 2^40 * 2^40 = 2^80 elements.
  m.Initializer("huge", DType::kFloat32, {int64_t{1} << 40, int64_t{1} << 40});
  m.Node("Relu", {"x"}, {"y"});
  m.Output("y");
  ExpectError(Import(m), {"'huge'", "overflow"});
}

TEST(ImporterBadInput, DimBindingThatOverflows) {
  ModelBuilder m(13);
  m.Input("tokens", DType::kFloat32, {"batch", int64_t{1} << 40});
  m.Node("Relu", {"tokens"}, {"y"});
  m.Output("y");
  // 2^40 * 2^40 * 4 bytes.
  ExpectError(Import(m, Dims({{"batch", int64_t{1} << 40}})), {"'tokens'", "overflow"});
  // INT64_MAX is refused before any arithmetic: no dimension may exceed 2^48.
  ExpectError(Import(m, Dims({{"batch", kInt64Max}})), {"--dim batch=", "0 to 2^48"});
}

TEST(ImporterBadInput, NegativeDimBindingNamesTheDim) {
  ModelBuilder m(13);
  m.Input("tokens", DType::kFloat32, {"batch", 4});
  m.Node("Relu", {"tokens"}, {"y"});
  m.Output("y");
  ExpectError(Import(m, Dims({{"batch", -3}})), {"--dim batch=-3", "0 to 2^48"});
}

TEST(ImporterBadInput, DanglingTensorReference) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {3});
  m.Node("Add", {"x", "ghost_tensor"}, {"y"}, "/add/Add");
  m.Output("y");
  ExpectError(Import(m), {"'ghost_tensor'", "/add/Add"});
}

TEST(ImporterBadInput, GraphOutputNothingProduces) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {3});
  m.Node("Relu", {"x"}, {"y"});
  m.Output("y");
  m.Output("phantom");
  ExpectError(Import(m), {"'phantom'"});
}

TEST(ImporterBadInput, CycleNamesANodeOnTheCycle) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {3});
  // Downstream of the cycle and listed first: it is not on the cycle and must not be named.
  m.Node("Relu", {"t2"}, {"y"}, "Downstream");
  m.Node("Add", {"x", "t2"}, {"t1"}, "CycleA");
  m.Node("Sigmoid", {"t1"}, {"t2"}, "CycleB");
  m.Output("y");
  auto g = Import(m);
  ASSERT_FALSE(g.ok());
  const std::string& msg = g.error().message;
  EXPECT_NE(msg.find("cycle"), std::string::npos) << msg;
  EXPECT_TRUE(msg.find("'CycleA'") != std::string::npos ||
              msg.find("'CycleB'") != std::string::npos)
      << msg;
  EXPECT_EQ(msg.find("Downstream"), std::string::npos) << msg;
}

TEST(ImporterBadInput, SelfLoop) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {3});
  m.Node("Add", {"x", "t"}, {"t"}, "Loopy");
  m.Output("t");
  ExpectError(Import(m), {"'Loopy'", "cycle"});
}

TEST(ImporterBadInput, UnknownOp) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {3});
  m.Node("FrobnicateTensor", {"x"}, {"y"}, "/frob");
  m.Output("y");
  ExpectError(Import(m), {"FrobnicateTensor"});
}

TEST(ImporterBadInput, UnknownDomain) {
  ModelBuilder m(13);
  m.Opset("com.acme", 1);
  m.Input("x", DType::kFloat32, {3});
  m.Node("FusedThing", {"x"}, {"y"}, "/fused").Domain("com.acme");
  m.Output("y");
  ExpectError(Import(m), {"com.acme"});
}

TEST(ImporterBadInput, DomainTheModelDoesNotImport) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {3});
  m.Node("FusedThing", {"x"}, {"y"}, "/fused").Domain("org.nowhere");
  m.Output("y");
  ExpectError(Import(m), {"org.nowhere"});
}

onnx::GraphProto TinyBody(const std::string& in, const std::string& out) {
  onnx::GraphProto g;
  g.set_name("body");
  auto* n = g.add_node();
  n->set_op_type("Identity");
  n->add_input(in);
  n->add_output(out);
  g.add_output()->set_name(out);
  return g;
}

TEST(ImporterBadInput, IfWithSubgraph) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {3});
  m.Input("cond", DType::kBool, {});
  m.Node("If", {"cond"}, {"y"}, "/decide/If")
      .Graph("then_branch", TinyBody("x", "a"))
      .Graph("else_branch", TinyBody("x", "b"));
  m.Output("y");
  ExpectError(Import(m), {"'/decide/If'", "subgraph"});
}

TEST(ImporterBadInput, LoopWithSubgraph) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {3});
  m.Int64Initializer("trip", {}, {4});
  m.Node("Loop", {"trip", "", "x"}, {"y"}, "/repeat/Loop").Graph("body", TinyBody("x", "z"));
  m.Output("y");
  ExpectError(Import(m), {"'/repeat/Loop'", "subgraph"});
}

TEST(ImporterBadInput, UnboundDimsAreAllNamedWithTheirInputs) {
  ModelBuilder m(13);
  m.Input("pixel_values", DType::kFloat32, {"batch_size", 3, 8, 8});
  m.Input("token_ids", DType::kInt64, {"batch_size", "seq_len"});
  m.Input("attn_mask", DType::kInt64, {"seq_len"});
  m.Input("extra", DType::kFloat32, {"bound_dim"});
  m.Node("Relu", {"pixel_values"}, {"y"});
  m.Output("y");
  auto g = Import(m, Dims({{"bound_dim", 2}}));
  ExpectError(g, {"batch_size", "seq_len", "pixel_values", "token_ids", "attn_mask"});
  if (g.ok()) return;
  const std::string& msg = g.error().message;
  EXPECT_EQ(msg.find("bound_dim"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("'extra'"), std::string::npos) << msg;
  // Each dim lists its own inputs: the part for batch_size names pixel_values and token_ids
  // (not attn_mask), the part for seq_len names token_ids and attn_mask (not pixel_values).
  size_t b = msg.find("batch_size"), s = msg.find("seq_len");
  ASSERT_LT(b, s);
  std::string b_part = msg.substr(b, s - b), s_part = msg.substr(s);
  EXPECT_NE(b_part.find("pixel_values"), std::string::npos) << msg;
  EXPECT_NE(b_part.find("token_ids"), std::string::npos) << msg;
  EXPECT_EQ(b_part.find("attn_mask"), std::string::npos) << msg;
  EXPECT_NE(s_part.find("token_ids"), std::string::npos) << msg;
  EXPECT_NE(s_part.find("attn_mask"), std::string::npos) << msg;
  EXPECT_EQ(s_part.find("pixel_values"), std::string::npos) << msg;
}

TEST(ImporterBadInput, UnsupportedOpset) {
  ModelBuilder m(99);
  m.Input("x", DType::kFloat32, {3});
  m.Node("Relu", {"x"}, {"y"});
  m.Output("y");
  ExpectError(Import(m), {"opset 99"});
}

TEST(ImporterBadInput, NoDefaultOpsetImported) {
  ModelBuilder m(0);
  m.Opset("com.acme", 1);
  m.Input("x", DType::kFloat32, {3});
  m.Node("Relu", {"x"}, {"y"});
  m.Output("y");
  ExpectError(Import(m), {"opset"});
}

TEST(ImporterBadInput, TensorProducedTwice) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {3});
  m.Node("Relu", {"x"}, {"t"}, "first");
  m.Node("Sigmoid", {"x"}, {"t"}, "second");
  m.Output("t");
  ExpectError(Import(m), {"'t'", "'second'"});
}

TEST(ImporterBadInput, NodeOverwritingAGraphInput) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {3});
  m.Node("Relu", {"x"}, {"x"}, "clobber");
  m.Output("x");
  ExpectError(Import(m), {"'x'", "'clobber'"});
}

TEST(ImporterBadInput, WrongInputCountForTheSchema) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {3});
  m.Node("Relu", {"x", "x"}, {"y"}, "/two/Relu");
  m.Output("y");
  ExpectError(Import(m), {"'/two/Relu'", "inputs"});
}

// An op ours alone shapes (no libonnx schema), fed nothing: an error, not a crash.
TEST(ImporterBadInput, SchemalessOpWithoutInputs) {
  ModelBuilder m(20);
  m.Input("x", DType::kFloat32, {3});
  m.Node("Gelu", {}, {"y"}, "/empty/Gelu");
  m.Output("y");
  ExpectError(Import(m), {"'/empty/Gelu'"});
}

// Integer shape arithmetic on hostile constants: INT64_MIN / -1 traps on x86.
TEST(ImporterBadInput, HostileIntegerDivisionDoesNotCrash) {
  ModelBuilder m(13);
  m.Int64Initializer("a", {1}, {INT64_MIN});
  m.Int64Initializer("b", {1}, {-1});
  m.Input("x", DType::kFloat32, {3});
  m.Node("Div", {"a", "b"}, {"q"}, "/Div");
  m.Node("Relu", {"x"}, {"y"});
  m.Output("y");
  m.Output("q", DType::kInt64);
  auto g = Import(m);
  if (g.ok()) {
    ExpectTensor(*g, "q", DType::kInt64, {1}, 8);
  } else {
    EXPECT_NE(g.error().message.find("/Div"), std::string::npos) << g.error().message;
  }
}

// ---------------------------------------------------------------------------------------------
// Validation before trust (issue 12): each case was a crash, a hang or a confident wrong answer.

// One changed byte turned a shape subgraph's Cast to INT64 into a Cast to FLOAT: Concat then
// joined an int64 constant and a float value, and the evaluator read integers that were not
// there (SIGSEGV).
TEST(ImporterHostile, ConcatOfInt64AndFloatIsATypeError) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {2, 4});
  m.Int64Initializer("lead", {1}, {-1});
  m.Node("Shape", {"x"}, {"s"});
  m.Node("Cast", {"s"}, {"sf"}).Int("to", static_cast<int64_t>(DType::kFloat32));
  m.Node("Concat", {"lead", "sf"}, {"target"}, "/Concat").Int("axis", 0);
  m.Node("Reshape", {"x", "target"}, {"y"});
  m.Output("y");
  ExpectError(Import(m), {"'/Concat'", "element type", "int64", "float32"});
}

TEST(ImporterHostile, ZeroStridesForConvAndPoolingAreRefusedBeforeOnnxDividesByThem) {
  for (const char* op : {"Conv", "MaxPool", "AveragePool"}) {
    ModelBuilder m(13);
    m.Input("x", DType::kFloat32, {1, 4, 8, 8});
    m.Initializer("w", DType::kFloat32, {4, 4, 3, 3});
    bool conv = std::string(op) == "Conv";
    auto n = m.Node(op, conv ? std::vector<std::string>{"x", "w"} : std::vector<std::string>{"x"},
                    {"y"}, "/pool");
    n.Ints("strides", {0, 0});
    if (!conv) n.Ints("kernel_shape", {3, 3});
    m.Output("y");
    ExpectError(Import(m), {"'/pool'", "strides", "[0,0]"});
  }
}

TEST(ImporterHostile, PoolKernelOfZeroIsRefused) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {1, 4, 8, 8});
  m.Node("MaxPool", {"x"}, {"y"}, "/pool").Ints("kernel_shape", {0, 3});
  m.Output("y");
  ExpectError(Import(m), {"'/pool'", "kernel_shape", "[0,3]"});
}

TEST(ImporterHostile, ConvGroupThatDoesNotDivideTheChannelsIsRefused) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {1, 4, 8, 8});
  m.Initializer("w", DType::kFloat32, {6, 1, 3, 3});  // 3 groups of 1 channel: needs 3 inputs
  m.Node("Conv", {"x", "w"}, {"y"}, "/conv").Int("group", 3);
  m.Output("y");
  ExpectError(Import(m), {"'/conv'", "group 3", "4 input channels"});
}

TEST(ImporterHostile, ReshapeThatChangesTheElementCountIsRefused) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {2, 4});
  m.Int64Initializer("target", {2}, {3, 7});
  m.Node("Reshape", {"x", "target"}, {"y"}, "/Reshape");
  m.Output("y");
  ExpectError(Import(m), {"'/Reshape'", "[2,4]", "[3,7]"});
}

TEST(ImporterHostile, ExpandToANonBroadcastShapeIsRefused) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {2, 4});
  m.Int64Initializer("target", {2}, {3, 4});
  m.Node("Expand", {"x", "target"}, {"y"}, "/Expand");
  m.Output("y");
  ExpectError(Import(m), {"'/Expand'"});
}

TEST(ImporterHostile, AxesFarOutsideTheRankAreRefused) {
  {
    ModelBuilder m(13);
    m.Input("x", DType::kFloat32, {2, 4});
    m.Node("Softmax", {"x"}, {"y"}, "/Softmax").Int("axis", int64_t{1} << 40);
    m.Output("y");
    ExpectError(Import(m), {"'/Softmax'", "axis 1099511627776", "[-2, 1]"});
  }
  {
    ModelBuilder m(13);
    m.Input("x", DType::kFloat32, {2, 4});
    m.Input("i", DType::kInt64, {3});
    m.Node("Gather", {"x", "i"}, {"y"}, "/Gather").Int("axis", -(int64_t{1} << 40));
    m.Output("y");
    ExpectError(Import(m), {"'/Gather'", "axis -1099511627776"});
  }
  {
    ModelBuilder m(13);
    m.Input("x", DType::kFloat32, {2, 4});
    m.Node("Transpose", {"x"}, {"y"}, "/T").Ints("perm", {0, 0});
    m.Output("y");
    ExpectError(Import(m), {"'/T'", "perm [0,0]"});
  }
}

// Range(0, 1e15) is a float tensor of 4e15 bytes: inspect listed it while estimate ignored it.
TEST(ImporterHostile, AbsurdRangeIsRefused) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {2});
  m.FloatInitializer("start", {}, {0.0f});
  m.FloatInitializer("limit", {}, {1e15f});
  m.FloatInitializer("delta", {}, {1.0f});
  m.Node("Range", {"start", "limit", "delta"}, {"r"}, "/Range");
  m.Node("Relu", {"x"}, {"y"});
  m.Output("y");
  ExpectError(Import(m), {"'/Range'", "2^48"});
}

TEST(ImporterHostile, TensorOverTheByteLimitIsRefused) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {"batch", 1 << 20});
  m.Node("Relu", {"x"}, {"y"});
  m.Output("y");
  // 2^29 * 2^20 floats = 2^51 bytes: representable, but no machine holds it.
  ExpectError(Import(m, Dims({{"batch", int64_t{1} << 29}})), {"'x'", "256 TiB"});
  // 2^20 * 2^20 floats = 2^42 bytes = 4 TiB: large but allowed.
  EXPECT_TRUE(Import(m, Dims({{"batch", int64_t{1} << 20}})).ok());
}

// A model exported with a fixed batch of 2, run with --dim batch=64, was answered for batch 2
// under a "batch=64" title.
TEST(ImporterHostile, UnknownDimNameIsRefused) {
  ModelBuilder fixed(13);
  fixed.Input("x", DType::kFloat32, {2, 4});
  fixed.Node("Relu", {"x"}, {"y"});
  fixed.Output("y");
  ExpectError(Import(fixed, Dims({{"batch", 64}})),
              {"--dim batch=64", "no dimension named 'batch'", "fixed shapes", "dynamic_axes"});
  ModelBuilder named(13);
  named.Input("x", DType::kFloat32, {"N", "seq"});
  named.Node("Relu", {"x"}, {"y"});
  named.Output("y");
  ExpectError(Import(named, Dims({{"N", 2}, {"seq", 3}, {"batch", 64}})),
              {"no dimension named 'batch'", "N seq"});
  EXPECT_TRUE(Import(named, Dims({{"N", 2}, {"seq", 3}})).ok());
}

// Names from the file reach messages escaped: a newline in a domain name must not split the
// one-line error.
TEST(ImporterHostile, ControlBytesInNamesAreEscaped) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {3});
  m.Node("Relu", {"x"}, {"y"}, "bad\nname\x01").Domain("evil\ndomain");
  m.Output("y");
  ExpectError(Import(m), {"bad\\x0aname\\x01", "evil\\x0adomain"});
}

TEST(ImporterHostile, PrintableKeepsUtf8AndEscapesTheRest) {
  EXPECT_EQ(Printable("plain"), "plain");
  EXPECT_EQ(Printable("tab\there"), "tab\\x09here");
  EXPECT_EQ(Printable("caf\xc3\xa9"), "caf\xc3\xa9");       // é, well-formed
  EXPECT_EQ(Printable("bad\xc3("), "bad\\xc3(");            // truncated sequence
  EXPECT_EQ(Printable("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a UTF-16 surrogate
  EXPECT_EQ(Printable(std::string(10, 'a'), 4), "aaaa...");
}

// torch.onnx.export's defaults: inference mode fuses BatchNorm into `onnx::Conv_*` weights;
// training mode with constant folding turns a Linear's W.t() into an `onnx::MatMul_*`
// initializer. Estimated as given, these weights would get no gradients or optimizer state.
TEST(ImporterHostile, WeightsFoldedIntoConstantsAreRefusedWithTheExportOption) {
  ModelBuilder mm(17);
  mm.Input("x", DType::kFloat32, {"batch", 8, 16});
  mm.Initializer("onnx::MatMul_12", DType::kFloat32, {16, 32});
  mm.Node("MatMul", {"x", "onnx::MatMul_12"}, {"y"}, "/fc/MatMul");
  mm.Output("y");
  ExpectError(Import(mm, Dims({{"batch", 2}})),
              {"folded into constants", "'onnx::MatMul_12' [16,32]", "/fc/MatMul",
               "do_constant_folding=False", "TrainingMode.TRAINING", "--allow-constant-weights"});
  ImportOptions allow = Dims({{"batch", 2}});
  allow.allow_constant_weights = true;
  auto g = Import(mm, allow);
  ASSERT_TRUE(g.ok()) << g.error().message;
  EXPECT_EQ(Find(*g, "onnx::MatMul_12")->role, TensorRole::kConstant);

  ModelBuilder conv(17);  // through an op on constants only, as a folded W.t() may be
  conv.Input("x", DType::kFloat32, {1, 3, 8, 8});
  conv.Initializer("onnx::Conv_7", DType::kFloat32, {4, 3, 3, 3});
  conv.Node("Identity", {"onnx::Conv_7"}, {"w"});
  conv.Node("Conv", {"x", "w"}, {"y"}, "/conv1/Conv");
  conv.Output("y");
  ExpectError(Import(conv), {"folded into constants", "/conv1/Conv"});
}

// Exporter-made float constants that are not weights (a causal mask, a scale) are fine.
TEST(ImporterHostile, ExporterConstantsThatAreNotWeightsAreAccepted) {
  ModelBuilder m(17);
  m.Input("x", DType::kFloat32, {2, 8, 8});
  m.Initializer("onnx::Add_3", DType::kFloat32, {1, 8, 8});
  m.Initializer("fc.weight", DType::kFloat32, {8, 8});
  m.Node("Add", {"x", "onnx::Add_3"}, {"masked"});
  m.Node("MatMul", {"masked", "fc.weight"}, {"y"});
  m.Output("y");
  auto g = Import(m);
  ASSERT_TRUE(g.ok()) << g.error().message;
  EXPECT_EQ(Find(*g, "fc.weight")->role, TensorRole::kParameter);
}

// A small weight stored inline (under the reader's 64 KiB payload limit) has values; a
// Transpose of it (a Linear on a 3-D input, an LSTM's weights) was folded like shape
// arithmetic, so the weight's gradient path disappeared. Computed from a parameter, it is a
// tensor at run time.
TEST(ImporterRoles, SmallInlineWeightIsNeverFoldedThroughATranspose) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {2, 3, 4});
  m.FloatInitializer("fc.weight", {2, 4}, {1, 2, 3, 4, 5, 6, 7, 8});
  m.Node("Transpose", {"fc.weight"}, {"wt"}).Ints("perm", {1, 0});
  m.Node("MatMul", {"x", "wt"}, {"y"});
  m.Output("y");
  auto g = Import(m);
  ASSERT_TRUE(g.ok()) << g.error().message;
  EXPECT_EQ(Find(*g, "fc.weight")->role, TensorRole::kParameter);
  const Tensor* wt = Find(*g, "wt");
  ExpectTensor(*g, "wt", DType::kFloat32, {4, 2}, 32);
  EXPECT_FALSE(wt->value.has_value()) << "a parameter's transpose was folded into a constant";
  EXPECT_EQ(wt->role, TensorRole::kActivation);
}

// A file already in topological order is scheduled in the file's order. Tensor vertices are
// numbered after op vertices, so smallest-vertex-first Kahn ran every weight-only op (the
// Transpose of a Linear's weight, listed by the exporter next to its MatMul) before anything
// else, and its backward last: weight gradients were held to the end of the backward.
TEST(ImporterGraph, FileOrderIsKeptForWeightOnlyOps) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {2, 3, 4});
  m.Initializer("fc.weight", DType::kFloat32, {4, 4});
  m.Node("Relu", {"x"}, {"a"}, "/act/Relu");
  m.Node("Transpose", {"fc.weight"}, {"wt"}, "/fc/Transpose").Ints("perm", {1, 0});
  m.Node("MatMul", {"a", "wt"}, {"y"}, "/fc/MatMul");
  m.Output("y");
  auto g = Import(m);
  ASSERT_TRUE(g.ok()) << g.error().message;
  ASSERT_EQ(g->ops.size(), 3u);
  EXPECT_EQ(g->ops[0].name, "/act/Relu");
  EXPECT_EQ(g->ops[1].name, "/fc/Transpose");
  EXPECT_EQ(g->ops[2].name, "/fc/MatMul");
}

}  // namespace
