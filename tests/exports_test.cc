// Real exports made by Debian's python3-torch/torchvision (validation/export_models.py, committed
// weightless): every tensor gets a concrete dtype and shape at batch 1, 8 and 64, and the
// importer's parameter/buffer split matches PyTorch's named_parameters()/named_buffers().
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "importer/importer.h"

using namespace vramsim;

namespace {

const std::string kExamples = VRAMSIM_EXAMPLES;

struct ExportCase {
  std::string name;
  int64_t seq;  // 0 when the model has no sequence dim
};

class Exports : public ::testing::TestWithParam<ExportCase> {};

TEST_P(Exports, EveryTensorShapedAtBatch1_8_64) {
  const ExportCase& c = GetParam();
  for (int64_t batch : {1, 8, 64}) {
    ImportOptions options;
    options.dims["batch"] = batch;
    if (c.seq) options.dims["seq"] = c.seq;
    auto graph = ImportModel(kExamples + "/" + c.name + ".onnx", options);
    ASSERT_TRUE(graph.ok()) << graph.error().message;
    size_t shaped = 0;
    for (const Tensor& t : graph->tensors) {
      bool ok = t.dtype != DType::kUndefined && ElementBytes(t.dtype).has_value();
      uint64_t expect = ok ? *ElementBytes(t.dtype) : 0;
      for (int64_t d : t.shape) {
        ok = ok && d >= 0;
        expect *= static_cast<uint64_t>(d);
      }
      ok = ok && t.bytes == expect;
      shaped += ok;
      EXPECT_TRUE(ok) << c.name << " batch " << batch << ": " << t.name;
    }
    EXPECT_EQ(shaped, graph->tensors.size());
    // The first output is [batch, 1000] logits for the classifiers, [batch, seq, 512] for GPT.
    const Tensor& out = graph->tensors[graph->outputs.at(0)];
    ASSERT_FALSE(out.shape.empty());
    EXPECT_EQ(out.shape[0], batch);
    if (c.seq) {
      EXPECT_EQ(out.shape, (std::vector<int64_t>{batch, c.seq, 512}));
    } else {
      EXPECT_EQ(out.shape, (std::vector<int64_t>{batch, 1000}));
    }
  }
}

TEST_P(Exports, ParametersAndBuffersMatchPyTorch) {
  const ExportCase& c = GetParam();
  std::ifstream f(kExamples + "/" + c.name + ".params.json");
  ASSERT_TRUE(f.good());
  nlohmann::json truth = nlohmann::json::parse(f);
  std::set<std::string> params = truth["parameters"], buffers = truth["buffers"];
  ImportOptions options;
  options.dims["batch"] = 2;
  if (c.seq) options.dims["seq"] = c.seq;
  auto graph = ImportModel(kExamples + "/" + c.name + ".onnx", options);
  ASSERT_TRUE(graph.ok()) << graph.error().message;
  size_t found_params = 0;
  for (const Tensor& t : graph->tensors) {
    if (params.count(t.name)) {
      ++found_params;
      EXPECT_EQ(t.role, TensorRole::kParameter) << t.name;
    } else if (buffers.count(t.name)) {
      EXPECT_EQ(t.role, TensorRole::kBuffer) << t.name;
    } else {
      EXPECT_NE(t.role, TensorRole::kParameter) << t.name << " is not a PyTorch parameter";
    }
  }
  EXPECT_EQ(found_params, params.size());
}

INSTANTIATE_TEST_SUITE_P(TorchExports, Exports,
                         ::testing::Values(ExportCase{"resnet18", 0}, ExportCase{"mobilenet_v2", 0},
                                           ExportCase{"vit_b_16", 0}, ExportCase{"gpt", 128},
                                           ExportCase{"gpt48", 64}),
                         [](const auto& info) { return info.param.name; });

}  // namespace
