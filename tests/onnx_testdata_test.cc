// Conformance over Debian's libonnx-testdata: every model under node/, pytorch-converted/,
// pytorch-operator/ and simple/ is imported, and each graph output's shape must equal the
// shape of the reference output_N.pb. Symbolic input dims are bound from input_N.pb.
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>
// onnx_pb.h defines ONNX_API, which onnx-data.pb.h needs.
#include <onnx/onnx-data.pb.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "importer/const_eval.h"
#include "importer/importer.h"

namespace fs = std::filesystem;
using namespace vramsim;

namespace {

const char* kRoot = "/usr/share/libonnx-testdata/data";

std::string Slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::optional<onnx::TensorProto> ReadTensor(const fs::path& p) {
  onnx::TensorProto t;
  if (!t.ParseFromString(Slurp(p))) return std::nullopt;
  return t;
}

std::vector<TypeShape> ReadSequence(const fs::path& p) {
  onnx::SequenceProto seq;
  std::vector<TypeShape> out;
  if (!seq.ParseFromString(Slurp(p))) return out;
  for (const auto& t : seq.tensor_values()) {
    out.push_back({static_cast<DType>(t.data_type()), {t.dims().begin(), t.dims().end()}});
  }
  return out;
}

struct Outcome {
  bool pass = false;
  std::string reason;
};

// bind_values: also bind the values of small inputs (shape-carrying inputs such as a Reshape
// target fed as a graph input), as a user would with known constants.
Outcome Check(const fs::path& dir, bool bind_values) {
  auto model = ReadModel((dir / "model.onnx").string());
  if (!model) return {false, model.error().message};
  fs::path data = dir / "test_data_set_0";
  std::vector<onnx::TensorProto> inputs, outputs;
  for (int i = 0;; ++i) {
    fs::path p = data / ("input_" + std::to_string(i) + ".pb");
    if (!fs::exists(p)) break;
    auto t = ReadTensor(p);
    if (!t) return {false, "cannot read " + p.string()};
    inputs.push_back(*t);
  }
  for (int i = 0;; ++i) {
    fs::path p = data / ("output_" + std::to_string(i) + ".pb");
    if (!fs::exists(p)) break;
    auto t = ReadTensor(p);
    if (!t) return {false, "cannot read " + p.string()};
    outputs.push_back(*t);
  }
  ImportOptions options;
  std::set<std::string> initializers;
  for (const auto& init : model->graph().initializer()) initializers.insert(init.name());
  size_t k = 0;
  for (const auto& in : model->graph().input()) {
    if (initializers.count(in.name())) continue;
    if (k >= inputs.size()) break;
    const onnx::TensorProto& ref = inputs[k++];
    if (in.type().has_sequence_type()) {
      options.input_sequences[in.name()] =
          ReadSequence(data / ("input_" + std::to_string(k - 1) + ".pb"));
      continue;
    }
    if (in.type().has_tensor_type()) {
      const auto& shape = in.type().tensor_type().shape();
      for (int d = 0; d < shape.dim_size() && d < ref.dims_size(); ++d) {
        if (shape.dim(d).has_dim_param()) options.dims[shape.dim(d).dim_param()] = ref.dims(d);
      }
    }
    if (bind_values) {
      auto v = ValueFromTensorProto(ref);
      bool same_shape = true;
      if (v && in.type().has_tensor_type()) {
        const auto& shape = in.type().tensor_type().shape();
        same_shape = shape.dim_size() == static_cast<int>(v->shape.size());
        for (int d = 0; same_shape && d < shape.dim_size(); ++d) {
          same_shape = !shape.dim(d).has_dim_value() || shape.dim(d).dim_value() == v->shape[d];
        }
      }
      if (v && same_shape) options.input_values[in.name()] = *v;
    }
  }
  auto graph = ImportModelProto(std::move(*model), options);
  if (!graph) return {false, graph.error().message};
  if (graph->outputs.size() < outputs.size()) return {false, "fewer graph outputs than references"};
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& t = graph->tensors[graph->outputs[i]];
    if (t.is_sequence) {
      auto want = ReadSequence(data / ("output_" + std::to_string(i) + ".pb"));
      if (want.size() != t.elements.size()) return {false, "sequence length differs"};
      for (size_t e = 0; e < want.size(); ++e) {
        if (want[e].shape != t.elements[e].shape) return {false, "sequence element shape differs"};
      }
      continue;
    }
    std::vector<int64_t> want(outputs[i].dims().begin(), outputs[i].dims().end());
    if (t.shape != want) {
      std::string got, exp;
      for (auto d : t.shape) got += std::to_string(d) + ",";
      for (auto d : want) exp += std::to_string(d) + ",";
      return {false,
              "output " + std::to_string(i) + " shape [" + got + "] != reference [" + exp + "]"};
    }
  }
  return {true, ""};
}

void RunSuite(bool bind_values, double min_rate) {
  if (!fs::exists(kRoot)) GTEST_SKIP() << "libonnx-testdata is not installed";
  int total = 0, passed = 0;
  std::vector<std::string> failures;
  for (const char* suite : {"node", "pytorch-converted", "pytorch-operator", "simple"}) {
    std::vector<fs::path> dirs;
    for (const auto& e : fs::directory_iterator(fs::path(kRoot) / suite)) {
      if (fs::exists(e.path() / "model.onnx")) dirs.push_back(e.path());
    }
    std::sort(dirs.begin(), dirs.end());
    for (const auto& dir : dirs) {
      ++total;
      Outcome o = Check(dir, bind_values);
      if (o.pass) {
        ++passed;
      } else {
        failures.push_back(std::string(suite) + "/" + dir.filename().string() + ": " + o.reason);
      }
    }
  }
  double rate = 100.0 * passed / std::max(total, 1);
  std::cout << (bind_values ? "[dims and small input values bound] " : "[dims bound] ") << passed
            << " of " << total << " models pass (" << rate << "%)\n";
  for (const auto& f : failures) std::cout << "  FAIL " << f << "\n";
  EXPECT_GE(total, 1000);
  EXPECT_GE(rate, min_rate);
}

}  // namespace

TEST(OnnxTestdata, OutputShapesMatchReferenceWithInputValuesBound) { RunSuite(true, 97.0); }
TEST(OnnxTestdata, OutputShapesMatchReferenceWithDimsOnly) { RunSuite(false, 0.0); }
