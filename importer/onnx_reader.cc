#include "importer/onnx_reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace vramsim {
namespace {

// Field numbers from onnx.proto.
constexpr uint32_t kModelGraph = 7;
constexpr uint32_t kGraphInitializer = 5;
// TensorProto payload fields: float_data, int32_data, string_data, int64_data, raw_data,
// double_data, uint64_data.
bool IsTensorPayload(uint32_t field) {
  return field == 4 || field == 5 || field == 6 || field == 7 || field == 9 || field == 10 ||
         field == 11;
}

struct Field {
  uint32_t number = 0;
  uint32_t wire_type = 0;
  const uint8_t* begin = nullptr;    // start of the tag
  const uint8_t* payload = nullptr;  // start of a length-delimited payload
  uint64_t length = 0;               // payload length for wire type 2
  const uint8_t* end = nullptr;      // one past the whole field
};

class Scanner {
 public:
  Scanner(const uint8_t* base, const uint8_t* begin, const uint8_t* end)
      : base_(base), p_(begin), end_(end) {}
  bool done() const { return p_ >= end_; }

  // Returns an error message, empty on success.
  std::string Next(Field* f) {
    f->begin = p_;
    uint64_t tag = 0;
    if (!Varint(&tag)) return Where("truncated field tag");
    f->number = static_cast<uint32_t>(tag >> 3);
    f->wire_type = static_cast<uint32_t>(tag & 7);
    if (f->number == 0 || (tag >> 3) > 0x1FFFFFFF) return Where("invalid field number");
    switch (f->wire_type) {
      case 0: {
        uint64_t v;
        if (!Varint(&v)) return Where("truncated varint");
        break;
      }
      case 1:
        if (end_ - p_ < 8) return Where("truncated fixed64");
        p_ += 8;
        break;
      case 5:
        if (end_ - p_ < 4) return Where("truncated fixed32");
        p_ += 4;
        break;
      case 2: {
        if (!Varint(&f->length)) return Where("truncated length");
        if (f->length > static_cast<uint64_t>(end_ - p_)) {
          return Where("field " + std::to_string(f->number) + " claims " +
                       std::to_string(f->length) + " bytes past the end of its message");
        }
        f->payload = p_;
        p_ += f->length;
        break;
      }
      default:
        return Where("unsupported wire type " + std::to_string(f->wire_type));
    }
    f->end = p_;
    return {};
  }

 private:
  bool Varint(uint64_t* out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ >= end_) return false;
      uint8_t b = *p_++;
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) {
        *out = v;
        return true;
      }
    }
    return false;
  }
  std::string Where(const std::string& what) const {
    return what + " at byte " + std::to_string(p_ - base_);
  }

  const uint8_t* base_;
  const uint8_t* p_;
  const uint8_t* end_;
};

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

void PutLengthDelimited(std::string* out, uint32_t number, const std::string& payload) {
  PutVarint(out, (static_cast<uint64_t>(number) << 3) | 2);
  PutVarint(out, payload.size());
  out->append(payload);
}

void Copy(std::string* out, const Field& f) {
  out->append(reinterpret_cast<const char*>(f.begin), f.end - f.begin);
}

class Slimmer {
 public:
  Slimmer(const uint8_t* base, const ReadOptions& options) : base_(base), options_(options) {}

  std::string Tensor(const uint8_t* begin, const uint8_t* end, std::string* out) {
    Scanner s(base_, begin, end);
    Field f;
    while (!s.done()) {
      if (auto err = s.Next(&f); !err.empty()) return err;
      // Skipping never touches the payload's pages, so weights cost nothing to import.
      if (IsTensorPayload(f.number) && f.wire_type == 2 && f.length > options_.keep_payload_bytes) {
        continue;
      }
      Copy(out, f);
    }
    return {};
  }

  std::string Graph(const uint8_t* begin, const uint8_t* end, std::string* out) {
    Scanner s(base_, begin, end);
    Field f;
    while (!s.done()) {
      if (auto err = s.Next(&f); !err.empty()) return err;
      if (f.number == kGraphInitializer && f.wire_type == 2) {
        std::string tensor;
        if (auto err = Tensor(f.payload, f.payload + f.length, &tensor); !err.empty()) return err;
        PutLengthDelimited(out, f.number, tensor);
      } else {
        Copy(out, f);
      }
    }
    return {};
  }

  std::string Model(const uint8_t* begin, const uint8_t* end, std::string* out) {
    Scanner s(base_, begin, end);
    Field f;
    while (!s.done()) {
      if (auto err = s.Next(&f); !err.empty()) return err;
      if (f.number == kModelGraph && f.wire_type == 2) {
        std::string graph;
        if (auto err = Graph(f.payload, f.payload + f.length, &graph); !err.empty()) return err;
        PutLengthDelimited(out, f.number, graph);
      } else {
        Copy(out, f);
      }
    }
    return {};
  }

 private:
  const uint8_t* base_;
  ReadOptions options_;
};

}  // namespace

Result<onnx::ModelProto> ReadModelFromBytes(const uint8_t* data, uint64_t size,
                                            const ReadOptions& options) {
  if (size == 0) return Error{"empty file"};
  std::string slim;
  Slimmer slimmer(data, options);
  if (auto err = slimmer.Model(data, data + size, &slim); !err.empty()) {
    return Error{"not a valid ONNX model: " + err};
  }
  onnx::ModelProto model;
  if (!model.ParseFromString(slim)) {
    return Error{"not a valid ONNX model: protobuf parsing failed"};
  }
  if (!model.has_graph()) return Error{"not an ONNX model: it has no graph"};
  if (model.opset_import_size() == 0 && model.ir_version() == 0) {
    return Error{"not an ONNX model: no IR version and no opset imports"};
  }
  return model;
}

Result<onnx::ModelProto> ReadModel(const std::string& path, const ReadOptions& options) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error{"cannot open " + path + ": " + std::strerror(errno)};
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Error{path + " is not a regular file"};
  }
  if (st.st_size == 0) {
    ::close(fd);
    return Error{path + ": empty file"};
  }
  void* map = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return Error{"cannot map " + path + ": " + std::strerror(errno)};
  auto result = ReadModelFromBytes(static_cast<const uint8_t*>(map),
                                   static_cast<uint64_t>(st.st_size), options);
  ::munmap(map, static_cast<size_t>(st.st_size));
  if (!result) return Error{path + ": " + result.error().message};
  return result;
}

}  // namespace vramsim
