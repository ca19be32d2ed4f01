// Shared helpers of the libFuzzer targets (fuzz/README.md).
#pragma once

#include <onnx/onnx_pb.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>

namespace vramsim::fuzz {

// Inputs over this are skipped: every bundled export is smaller, and bigger inputs only slow
// the fuzzer down.
inline constexpr size_t kMaxInputBytes = 1 << 20;

// The largest value a fuzzed symbolic dim takes.
inline constexpr int64_t kMaxDim = 4096;

// Number of dim values at the start of a fuzz_shapes / fuzz_simulate input (two bytes each,
// little-endian, taken modulo kMaxDim + 1).
inline constexpr size_t kDimSlots = 4;
inline constexpr size_t kDimPrefixBytes = 2 * kDimSlots;

// Reads the dim prefix; advances data/size past it. False when the input is too short.
inline bool TakeDimValues(const uint8_t** data, size_t* size, int64_t (&values)[kDimSlots]) {
  if (*size < kDimPrefixBytes) return false;
  for (size_t i = 0; i < kDimSlots; ++i) {
    unsigned v = (*data)[2 * i] | (static_cast<unsigned>((*data)[2 * i + 1]) << 8);
    values[i] = static_cast<int64_t>(v % (kMaxDim + 1));
  }
  *data += kDimPrefixBytes;
  *size -= kDimPrefixBytes;
  return true;
}

// The symbolic dim names of the graph's inputs (sorted, unique), bound in that order to the
// fuzzed values (names past the slots reuse them cyclically).
inline std::map<std::string, int64_t> BindDims(const onnx::ModelProto& model,
                                               const int64_t (&values)[kDimSlots]) {
  std::set<std::string> names;
  if (model.has_graph()) {
    for (const auto& in : model.graph().input()) {
      if (!in.has_type() || !in.type().has_tensor_type() || !in.type().tensor_type().has_shape()) {
        continue;
      }
      for (const auto& d : in.type().tensor_type().shape().dim()) {
        if (d.has_dim_param() && !d.dim_param().empty()) names.insert(d.dim_param());
      }
      if (names.size() > 64) break;
    }
  }
  std::map<std::string, int64_t> dims;
  size_t i = 0;
  for (const auto& n : names) dims[n] = values[i++ % kDimSlots];
  return dims;
}

// With VRAMSIM_FUZZ_ARGS set in the environment, prints the `vramsim` flags equivalent to the
// dims and options a reproducer binds (tests/fuzz_regressions/run.sh reads them from
// <reproducer>.args): VRAMSIM_FUZZ_ARGS=1 build-fuzz/fuzz/fuzz_simulate CRASH_FILE
inline void PrintArgs(const std::map<std::string, int64_t>& dims, const std::string& extra = {}) {
  static const bool enabled = std::getenv("VRAMSIM_FUZZ_ARGS") != nullptr;
  if (!enabled) return;
  std::string line;
  for (const auto& [name, value] : dims) {
    line += "--dim " + name + "=" + std::to_string(value) + " ";
  }
  line += extra;
  std::fprintf(stderr, "VRAMSIM_FUZZ_ARGS: %s\n", line.c_str());
}

}  // namespace vramsim::fuzz
