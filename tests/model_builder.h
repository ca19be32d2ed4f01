// A tiny helper to build onnx::ModelProto by hand in tests: inputs with concrete or symbolic
// dims, initializers (typed, raw, external or payload-less), nodes with attributes, outputs,
// opsets; serialized to bytes or to a file in a temporary directory that is removed afterwards.
#pragma once

#include <onnx/onnx_pb.h>
#include <stdlib.h>
#include <unistd.h>

#include <concepts>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

#include "importer/dtype.h"

namespace vramsim::testing {

// One dimension of a graph input: a size (dim_value) or a name (dim_param).
struct Dim {
  template <std::integral T>
  Dim(T v) : value(static_cast<int64_t>(v)) {}  // NOLINT: implicit by design
  Dim(const char* p) : param(p) {}              // NOLINT
  Dim(std::string p) : param(std::move(p)) {}   // NOLINT
  int64_t value = 0;
  std::string param;
};

// A node being built; attributes are added fluently.
class NodeRef {
 public:
  explicit NodeRef(onnx::NodeProto* node) : node_(node) {}
  NodeRef& Int(const std::string& key, int64_t v) {
    auto* a = Add(key, onnx::AttributeProto::INT);
    a->set_i(v);
    return *this;
  }
  NodeRef& Ints(const std::string& key, const std::vector<int64_t>& v) {
    auto* a = Add(key, onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
    return *this;
  }
  NodeRef& Float(const std::string& key, float v) {
    auto* a = Add(key, onnx::AttributeProto::FLOAT);
    a->set_f(v);
    return *this;
  }
  NodeRef& String(const std::string& key, const std::string& v) {
    auto* a = Add(key, onnx::AttributeProto::STRING);
    a->set_s(v);
    return *this;
  }
  NodeRef& Tensor(const std::string& key, const onnx::TensorProto& t) {
    auto* a = Add(key, onnx::AttributeProto::TENSOR);
    *a->mutable_t() = t;
    return *this;
  }
  NodeRef& Graph(const std::string& key, const onnx::GraphProto& g) {
    auto* a = Add(key, onnx::AttributeProto::GRAPH);
    *a->mutable_g() = g;
    return *this;
  }
  NodeRef& Domain(const std::string& domain) {
    node_->set_domain(domain);
    return *this;
  }
  onnx::NodeProto& proto() { return *node_; }

 private:
  onnx::AttributeProto* Add(const std::string& key, onnx::AttributeProto::AttributeType type) {
    auto* a = node_->add_attribute();
    a->set_name(key);
    a->set_type(type);
    return a;
  }
  onnx::NodeProto* node_;
};

// TensorProtos by hand.
inline onnx::TensorProto TensorOf(const std::string& name, DType dtype,
                                  const std::vector<int64_t>& dims) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(static_cast<int32_t>(dtype));
  for (int64_t d : dims) t.add_dims(d);
  return t;
}
inline onnx::TensorProto Int64Tensor(const std::string& name, const std::vector<int64_t>& dims,
                                     const std::vector<int64_t>& values) {
  onnx::TensorProto t = TensorOf(name, DType::kInt64, dims);
  for (int64_t v : values) t.add_int64_data(v);
  return t;
}
inline onnx::TensorProto FloatTensor(const std::string& name, const std::vector<int64_t>& dims,
                                     const std::vector<float>& values) {
  onnx::TensorProto t = TensorOf(name, DType::kFloat32, dims);
  for (float v : values) t.add_float_data(v);
  return t;
}
template <class T>
onnx::TensorProto RawTensor(const std::string& name, DType dtype, const std::vector<int64_t>& dims,
                            const std::vector<T>& values) {
  onnx::TensorProto t = TensorOf(name, dtype, dims);
  std::string raw(values.size() * sizeof(T), '\0');
  if (!values.empty()) std::memcpy(raw.data(), values.data(), raw.size());
  t.set_raw_data(raw);
  return t;
}

class ModelBuilder {
 public:
  // The default domain's opset; 0 imports none.
  explicit ModelBuilder(int64_t opset = 17) {
    model_.set_ir_version(8);
    model_.set_producer_name("vramsim-tests");
    model_.mutable_graph()->set_name("test_graph");
    if (opset > 0) Opset("", opset);
  }

  ModelBuilder& Opset(const std::string& domain, int64_t version) {
    for (auto& imp : *model_.mutable_opset_import()) {
      if (imp.domain() == domain) {
        imp.set_version(version);
        return *this;
      }
    }
    auto* imp = model_.add_opset_import();
    imp->set_domain(domain);
    imp->set_version(version);
    return *this;
  }

  ModelBuilder& Input(const std::string& name, DType dtype, const std::vector<Dim>& dims) {
    auto* in = graph()->add_input();
    in->set_name(name);
    auto* tt = in->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(static_cast<int32_t>(dtype));
    auto* shape = tt->mutable_shape();
    for (const Dim& d : dims) {
      auto* dim = shape->add_dim();
      if (d.param.empty()) {
        dim->set_dim_value(d.value);
      } else {
        dim->set_dim_param(d.param);
      }
    }
    return *this;
  }

  ModelBuilder& Output(const std::string& name, DType dtype = DType::kFloat32) {
    auto* out = graph()->add_output();
    out->set_name(name);
    out->mutable_type()->mutable_tensor_type()->set_elem_type(static_cast<int32_t>(dtype));
    return *this;
  }

  // An initializer with dims and dtype only (no payload, as a reader that skipped it sees).
  ModelBuilder& Initializer(const std::string& name, DType dtype,
                            const std::vector<int64_t>& dims) {
    *graph()->add_initializer() = TensorOf(name, dtype, dims);
    return *this;
  }
  ModelBuilder& Initializer(const onnx::TensorProto& tensor) {
    *graph()->add_initializer() = tensor;
    return *this;
  }
  ModelBuilder& Int64Initializer(const std::string& name, const std::vector<int64_t>& dims,
                                 const std::vector<int64_t>& values) {
    return Initializer(Int64Tensor(name, dims, values));
  }
  ModelBuilder& FloatInitializer(const std::string& name, const std::vector<int64_t>& dims,
                                 const std::vector<float>& values) {
    return Initializer(FloatTensor(name, dims, values));
  }
  // An initializer whose data lives in an external file `location` (which need not exist).
  ModelBuilder& ExternalInitializer(const std::string& name, DType dtype,
                                    const std::vector<int64_t>& dims, const std::string& location,
                                    uint64_t length) {
    onnx::TensorProto t = TensorOf(name, dtype, dims);
    t.set_data_location(onnx::TensorProto::EXTERNAL);
    auto add = [&](const std::string& k, const std::string& v) {
      auto* e = t.add_external_data();
      e->set_key(k);
      e->set_value(v);
    };
    add("location", location);
    add("offset", "0");
    add("length", std::to_string(length));
    return Initializer(t);
  }

  NodeRef Node(const std::string& op, const std::vector<std::string>& inputs,
               const std::vector<std::string>& outputs, const std::string& name = "") {
    auto* n = graph()->add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (const auto& i : inputs) n->add_input(i);
    for (const auto& o : outputs) n->add_output(o);
    return NodeRef(n);
  }

  onnx::ModelProto& proto() { return model_; }
  onnx::GraphProto* graph() { return model_.mutable_graph(); }
  std::string Bytes() const { return model_.SerializeAsString(); }

 private:
  onnx::ModelProto model_;
};

// A temporary directory, removed with everything in it when this goes out of scope.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "vramsim_test_XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

  // Writes `bytes` to `name` in this directory and returns its path.
  std::string Write(const std::string& name, const std::string& bytes) const {
    std::string p = File(name);
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    f.close();
    if (!f) std::abort();
    return p;
  }
  std::string Write(const std::string& name, const ModelBuilder& model) const {
    return Write(name, model.Bytes());
  }

 private:
  std::filesystem::path path_;
};

}  // namespace vramsim::testing
