// Reads an ONNX ModelProto without bringing weight bytes into memory: the file is mapped and
// its protobuf wire format walked by hand, copying every field except large tensor payloads
// into a slim message that protobuf then parses. Works for files over 2 GiB and for models
// whose external data files are missing (only dtype and dims of initializers are needed).
#pragma once

#include <onnx/onnx_pb.h>

#include <string>

#include "importer/status.h"

namespace vramsim {

struct ReadOptions {
  // Tensor payload fields larger than this are skipped; smaller ones (shape constants) kept.
  uint64_t keep_payload_bytes = 64 * 1024;
};

Result<onnx::ModelProto> ReadModel(const std::string& path, const ReadOptions& options = {});
// The same from bytes in memory (tests, fuzzing).
Result<onnx::ModelProto> ReadModelFromBytes(const uint8_t* data, uint64_t size,
                                            const ReadOptions& options = {});

}  // namespace vramsim
