// Element types, numbered as ONNX's TensorProto.DataType so they convert without a table.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace vramsim {

enum class DType : int32_t {
  kUndefined = 0,
  kFloat32 = 1,
  kUInt8 = 2,
  kInt8 = 3,
  kUInt16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kString = 8,
  kBool = 9,
  kFloat16 = 10,
  kFloat64 = 11,
  kUInt32 = 12,
  kUInt64 = 13,
  kComplex64 = 14,
  kComplex128 = 15,
  kBFloat16 = 16,
};

// Bytes per element; nullopt for types without a fixed size (string) or unknown codes.
std::optional<uint64_t> ElementBytes(DType dtype);
std::string_view DTypeName(DType dtype);
std::optional<DType> DTypeFromOnnx(int32_t code);
bool IsFloating(DType dtype);
bool IsInteger(DType dtype);  // includes bool

// Checked 64-bit arithmetic: false on overflow.
inline bool CheckedMul(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}
inline bool CheckedAdd(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_add_overflow(a, b, out);
}

}  // namespace vramsim
