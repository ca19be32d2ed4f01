// Real exports made with torch.onnx.export's defaults (validation/export_default_exports.py):
// they must be refused with an error that names the export options to change, never estimated
// as a model with almost no parameters.
#include <gtest/gtest.h>

#include <string>

#include "importer/importer.h"

using namespace vramsim;

namespace {

std::string Path(const std::string& name) {
  return std::string(VRAMSIM_SOURCE_DIR) + "/tests/data/default_exports/" + name;
}

std::string HostilePath(const std::string& name) {
  return std::string(VRAMSIM_SOURCE_DIR) + "/tests/fuzz_regressions/fuzz_import/" + name;
}

void ExpectRefused(const std::string& file, const ImportOptions& options,
                   const std::string& example) {
  auto g = ImportModel(Path(file), options);
  ASSERT_FALSE(g.ok()) << file << " imported";
  const std::string& msg = g.error().message;
  for (const char* part :
       {"folded into constants", "do_constant_folding=False",
        "training=torch.onnx.TrainingMode.TRAINING", "--allow-constant-weights"}) {
    EXPECT_NE(msg.find(part), std::string::npos) << msg << "\nlacks " << part;
  }
  EXPECT_NE(msg.find(example), std::string::npos) << msg << "\nlacks " << example;
  EXPECT_EQ(msg.find('\n'), std::string::npos);
}

// Inference mode: BatchNorm fused into the convolutions' `onnx::Conv_*` weights.
TEST(DefaultExports, InferenceModeResnet18IsRefused) {
  ImportOptions o;
  o.dims = {{"batch", 4}};
  ExpectRefused("resnet18_eval_default.onnx", o, "onnx::Conv_");
}

// Training mode with the default constant folding: each Linear's W.t() is a constant.
TEST(DefaultExports, TrainingModeWithConstantFoldingGptIsRefused) {
  ImportOptions o;
  o.dims = {{"batch", 4}, {"seq", 16}};
  ExpectRefused("gpt_train_folded.onnx", o, "onnx::MatMul_");
}

// With the explicit flag the answer comes, the folded weights counted as constants.
TEST(DefaultExports, ExplicitFlagImportsFoldedWeightsAsConstants) {
  ImportOptions o;
  o.dims = {{"batch", 4}, {"seq", 16}};
  o.allow_constant_weights = true;
  auto g = ImportModel(Path("gpt_train_folded.onnx"), o);
  ASSERT_TRUE(g.ok()) << g.error().message;
  int folded = 0;
  for (const Tensor& t : g->tensors) {
    if (t.name.rfind("onnx::MatMul_", 0) == 0) {
      EXPECT_EQ(t.role, TensorRole::kConstant) << t.name;
      ++folded;
    }
  }
  // 2 blocks x (qkv, attention proj, fc, mlp proj) + the LM head.
  EXPECT_EQ(folded, 9);
}

// One byte of validation/models/shufflenet_v2_x1_0.onnx changed: a Cast to=INT64 became
// to=FLOAT in a shape subgraph, and the evaluator's Concat read integers a float value does not
// have (SIGSEGV before validation).
TEST(HostileFiles, ShufflenetWithOneCastToFloatIsATypeError) {
  ImportOptions o;
  o.dims = {{"batch", 2}};
  auto g = ImportModel(HostilePath("shufflenet_cast_to_float.onnx"), o);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.error().message.find("must have one element type"), std::string::npos)
      << g.error().message;
}

}  // namespace
