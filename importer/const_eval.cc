#include "importer/const_eval.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>

namespace vramsim {
namespace {

using Shape = std::vector<int64_t>;

std::optional<uint64_t> CountElements(const Shape& shape) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || !CheckedMul(n, static_cast<uint64_t>(d), &n)) return std::nullopt;
  }
  return n;
}

bool Small(const Shape& shape) {
  auto n = CountElements(shape);
  return n && *n <= kMaxEvalElements;
}

ConstValue Make(DType dtype, Shape shape) {
  ConstValue v;
  v.dtype = dtype;
  v.shape = std::move(shape);
  uint64_t n = *CountElements(v.shape);
  if (IsFloating(dtype)) {
    v.floats.assign(n, 0.0);
  } else {
    v.ints.assign(n, 0);
  }
  return v;
}

// Stores a double into an element, converting as a cast to `dtype` would.
void Set(ConstValue& v, size_t i, double x) {
  if (IsFloating(v.dtype)) {
    v.floats[i] = x;
  } else if (v.dtype == DType::kBool) {
    v.ints[i] = x != 0;
  } else {
    // Out-of-range float -> int64 conversion is undefined; such values become 0.
    v.ints[i] = x >= -0x1p63 && x < 0x1p63 ? static_cast<int64_t>(x) : 0;
  }
}

std::vector<int64_t> Ints(const ConstValue& v) {
  if (!IsFloating(v.dtype)) return v.ints;
  std::vector<int64_t> out;
  for (double x : v.floats) out.push_back(static_cast<int64_t>(x));
  return out;
}

int64_t NormalizeAxis(int64_t axis, int64_t rank) { return axis < 0 ? axis + rank : axis; }

// Two's-complement wrap-around, as ONNX (numpy) integer arithmetic; no signed overflow.
int64_t WrapAdd(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
}
int64_t WrapSub(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) - static_cast<uint64_t>(b));
}
int64_t WrapMul(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b));
}

std::optional<Shape> Broadcast(const std::vector<const Shape*>& shapes) {
  size_t rank = 0;
  for (const Shape* s : shapes) rank = std::max(rank, s->size());
  Shape out(rank, 1);
  for (const Shape* s : shapes) {
    for (size_t i = 0; i < s->size(); ++i) {
      int64_t& o = out[rank - s->size() + i];
      int64_t d = (*s)[i];
      if (d == o || d == 1) continue;
      if (o == 1) {
        o = d;
      } else {
        return std::nullopt;
      }
    }
  }
  return out;
}

// Flat index into `in` (broadcast to `out`) for each flat index of `out`.
std::vector<size_t> BroadcastIndex(const Shape& in, const Shape& out) {
  size_t n = *CountElements(out);
  std::vector<size_t> idx(n);
  size_t rank = out.size();
  Shape in_full(rank, 1);
  std::copy(in.begin(), in.end(), in_full.begin() + (rank - in.size()));
  std::vector<size_t> stride(rank, 0);
  size_t s = 1;
  for (size_t d = rank; d-- > 0;) {
    stride[d] = in_full[d] == 1 ? 0 : s;
    s *= static_cast<size_t>(in_full[d]);
  }
  std::vector<int64_t> pos(rank, 0);
  for (size_t i = 0; i < n; ++i) {
    size_t k = 0;
    for (size_t d = 0; d < rank; ++d) k += static_cast<size_t>(pos[d]) * stride[d];
    idx[i] = k;
    for (size_t d = rank; d-- > 0;) {
      if (++pos[d] < out[d]) break;
      pos[d] = 0;
    }
  }
  return idx;
}

using Values = std::vector<const ConstValue*>;
using Out = std::optional<std::vector<ConstValue>>;

Out One(ConstValue v) {
  std::vector<ConstValue> out;
  out.push_back(std::move(v));
  return out;
}

// N-ary elementwise op with numpy broadcasting; `f` sees doubles, or exact int64s when
// every operand is integral (so large int64 bounds survive).
Out Elementwise(const Values& in, DType out_dtype,
                const std::function<double(const std::vector<double>&)>& f,
                const std::function<int64_t(const std::vector<int64_t>&)>& fi) {
  std::vector<const Shape*> shapes;
  bool all_int = true;
  for (const ConstValue* v : in) {
    shapes.push_back(&v->shape);
    all_int = all_int && !IsFloating(v->dtype);
  }
  auto shape = Broadcast(shapes);
  if (!shape || !Small(*shape)) return std::nullopt;
  ConstValue out = Make(out_dtype, *shape);
  std::vector<std::vector<size_t>> idx;
  for (const ConstValue* v : in) idx.push_back(BroadcastIndex(v->shape, *shape));
  size_t n = out.size();
  std::vector<double> args(in.size());
  std::vector<int64_t> iargs(in.size());
  for (size_t i = 0; i < n; ++i) {
    if (all_int && fi && !IsFloating(out_dtype)) {
      for (size_t k = 0; k < in.size(); ++k) iargs[k] = in[k]->ints[idx[k][i]];
      out.ints[i] = fi(iargs);
      if (out_dtype == DType::kBool) out.ints[i] = out.ints[i] != 0;
    } else {
      for (size_t k = 0; k < in.size(); ++k) args[k] = in[k]->at(idx[k][i]);
      Set(out, i, f(args));
    }
  }
  return One(std::move(out));
}

Out Binary(const std::string& type, const Values& in) {
  const ConstValue& a = *in[0];
  DType dt = a.dtype;
  auto cmp = [&](auto op) {
    return Elementwise(
        in, DType::kBool, [op](const std::vector<double>& x) { return op(x[0], x[1]) ? 1.0 : 0.0; },
        [op](const std::vector<int64_t>& x) -> int64_t { return op(x[0], x[1]); });
  };
  if (type == "Add") {
    return Elementwise(
        in, dt, [](const auto& x) { return x[0] + x[1]; },
        [](const std::vector<int64_t>& x) { return WrapAdd(x[0], x[1]); });
  }
  if (type == "Sub") {
    return Elementwise(
        in, dt, [](const auto& x) { return x[0] - x[1]; },
        [](const std::vector<int64_t>& x) { return WrapSub(x[0], x[1]); });
  }
  if (type == "Mul") {
    return Elementwise(
        in, dt, [](const auto& x) { return x[0] * x[1]; },
        [](const std::vector<int64_t>& x) { return WrapMul(x[0], x[1]); });
  }
  if (type == "Div") {
    return Elementwise(
        in, dt, [](const auto& x) { return x[0] / x[1]; },
        [](const std::vector<int64_t>& x) -> int64_t {
          if (x[1] == 0) return 0;
          if (x[1] == -1) return WrapSub(0, x[0]);  // INT64_MIN / -1 traps
          return x[0] / x[1];
        });
  }
  if (type == "Pow") {
    return Elementwise(
        in, dt, [](const auto& x) { return std::pow(x[0], x[1]); }, nullptr);
  }
  if (type == "Equal") return cmp(std::equal_to<>());
  if (type == "Less") return cmp(std::less<>());
  if (type == "Greater") return cmp(std::greater<>());
  if (type == "LessOrEqual") return cmp(std::less_equal<>());
  if (type == "GreaterOrEqual") return cmp(std::greater_equal<>());
  if (type == "And") return cmp(std::logical_and<>());
  if (type == "Or") return cmp(std::logical_or<>());
  if (type == "Xor") return cmp(std::not_equal_to<>());
  return std::nullopt;
}

Out Unary(const std::string& type, const ConstValue& a) {
  std::function<double(double)> f;
  if (type == "Neg") f = [](double x) { return -x; };
  if (type == "Abs") f = [](double x) { return std::fabs(x); };
  if (type == "Sqrt") f = [](double x) { return std::sqrt(x); };
  if (type == "Floor") f = [](double x) { return std::floor(x); };
  if (type == "Ceil") f = [](double x) { return std::ceil(x); };
  if (type == "Reciprocal") f = [](double x) { return 1.0 / x; };
  if (type == "Sign") f = [](double x) { return static_cast<double>((x > 0) - (x < 0)); };
  if (type == "Not") f = [](double x) { return x == 0 ? 1.0 : 0.0; };
  if (type == "Relu") f = [](double x) { return x > 0 ? x : 0.0; };
  if (!f) return std::nullopt;
  if (!IsFloating(a.dtype) && (type == "Neg" || type == "Abs" || type == "Not" || type == "Sign")) {
    ConstValue out = a;
    for (auto& x : out.ints) {
      if (type == "Neg") x = WrapSub(0, x);
      if (type == "Abs") x = x < 0 ? WrapSub(0, x) : x;
      if (type == "Not") x = !x;
      if (type == "Sign") x = (x > 0) - (x < 0);
    }
    return One(std::move(out));
  }
  ConstValue out = Make(a.dtype, a.shape);
  for (size_t i = 0; i < a.size(); ++i) Set(out, i, f(a.at(i)));
  return One(std::move(out));
}

std::vector<int64_t> Strides(const Shape& shape) {
  std::vector<int64_t> s(shape.size(), 1);
  for (size_t d = shape.size(); d-- > 1;) s[d - 1] = s[d] * shape[d];
  return s;
}

// Copies element `from` of `src` to element `to` of `dst`, converting between the integer and
// floating families as a cast would (validation refuses mixed inputs; this stays safe anyway).
void CopyElement(const ConstValue& src, size_t from, ConstValue& dst, size_t to) {
  if (IsFloating(dst.dtype)) {
    dst.floats[to] = src.at(from);
  } else if (IsFloating(src.dtype)) {
    Set(dst, to, src.floats[from]);
  } else {
    dst.ints[to] = src.ints[from];
  }
}

Out Gather(const ConstValue& data, const ConstValue& indices, int64_t axis) {
  int64_t rank = static_cast<int64_t>(data.shape.size());
  axis = NormalizeAxis(axis, rank);
  if (axis < 0 || axis >= rank) return std::nullopt;
  Shape out_shape(data.shape.begin(), data.shape.begin() + axis);
  out_shape.insert(out_shape.end(), indices.shape.begin(), indices.shape.end());
  out_shape.insert(out_shape.end(), data.shape.begin() + axis + 1, data.shape.end());
  if (!Small(out_shape)) return std::nullopt;
  ConstValue out = Make(data.dtype, out_shape);
  int64_t outer = 1, inner = 1, dim = data.shape[axis];
  for (int64_t d = 0; d < axis; ++d) outer *= data.shape[d];
  for (int64_t d = axis + 1; d < rank; ++d) inner *= data.shape[d];
  std::vector<int64_t> idx = Ints(indices);
  size_t o = 0;
  for (int64_t a = 0; a < outer; ++a) {
    for (int64_t k : idx) {
      if (k < 0) k += dim;
      if (k < 0 || k >= dim) return std::nullopt;
      for (int64_t b = 0; b < inner; ++b) {
        CopyElement(data, static_cast<size_t>((a * dim + k) * inner + b), out, o++);
      }
    }
  }
  return One(std::move(out));
}

Out Slice(const ConstValue& data, std::vector<int64_t> starts, std::vector<int64_t> ends,
          std::vector<int64_t> axes, std::vector<int64_t> steps) {
  int64_t rank = static_cast<int64_t>(data.shape.size());
  if (axes.empty()) {
    axes.resize(starts.size());
    std::iota(axes.begin(), axes.end(), 0);
  }
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (starts.size() != ends.size() || axes.size() != starts.size() ||
      steps.size() != starts.size()) {
    return std::nullopt;
  }
  std::vector<int64_t> begin(rank, 0), step(rank, 1);
  Shape out_shape = data.shape;
  for (size_t i = 0; i < axes.size(); ++i) {
    int64_t ax = NormalizeAxis(axes[i], rank);
    if (ax < 0 || ax >= rank || steps[i] == 0) return std::nullopt;
    int64_t dim = data.shape[ax];
    int64_t s = starts[i], e = ends[i], st = steps[i];
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    if (st > 0) {
      s = std::clamp<int64_t>(s, 0, dim);
      e = std::clamp<int64_t>(e, 0, dim);
      out_shape[ax] = e > s ? (e - s - 1) / st + 1 : 0;
    } else {
      s = std::clamp<int64_t>(s, 0, dim - 1);
      e = std::clamp<int64_t>(e, -1, dim - 1);
      uint64_t mag = 0 - static_cast<uint64_t>(st);  // |st|, INT64_MIN included
      out_shape[ax] = s > e ? static_cast<int64_t>(static_cast<uint64_t>(s - e - 1) / mag + 1) : 0;
    }
    begin[ax] = s;
    step[ax] = st;
  }
  if (!Small(out_shape)) return std::nullopt;
  ConstValue out = Make(data.dtype, out_shape);
  auto in_strides = Strides(data.shape);
  std::vector<int64_t> pos(rank, 0);
  for (size_t i = 0; i < out.size(); ++i) {
    int64_t k = 0;
    for (int64_t d = 0; d < rank; ++d) k += (begin[d] + pos[d] * step[d]) * in_strides[d];
    CopyElement(data, static_cast<size_t>(k), out, i);
    for (int64_t d = rank; d-- > 0;) {
      if (++pos[d] < out_shape[d]) break;
      pos[d] = 0;
    }
  }
  return One(std::move(out));
}

Out Concat(const Values& in, int64_t axis) {
  int64_t rank = static_cast<int64_t>(in[0]->shape.size());
  axis = NormalizeAxis(axis, rank);
  if (axis < 0 || axis >= rank) return std::nullopt;
  Shape out_shape = in[0]->shape;
  out_shape[axis] = 0;
  for (const ConstValue* v : in) {
    if (static_cast<int64_t>(v->shape.size()) != rank || v->dtype != in[0]->dtype) {
      return std::nullopt;
    }
    out_shape[axis] += v->shape[axis];
  }
  if (!Small(out_shape)) return std::nullopt;
  ConstValue out = Make(in[0]->dtype, out_shape);
  int64_t outer = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= out_shape[d];
  size_t o = 0;
  for (int64_t a = 0; a < outer; ++a) {
    for (const ConstValue* v : in) {
      int64_t chunk = static_cast<int64_t>(v->size()) / std::max<int64_t>(outer, 1);
      for (int64_t b = 0; b < chunk; ++b)
        CopyElement(*v, static_cast<size_t>(a * chunk + b), out, o++);
    }
  }
  return One(std::move(out));
}

Out Transpose(const ConstValue& data, std::vector<int64_t> perm) {
  size_t rank = data.shape.size();
  if (perm.empty()) {
    perm.resize(rank);
    std::iota(perm.rbegin(), perm.rend(), 0);
  }
  if (perm.size() != rank) return std::nullopt;
  Shape out_shape(rank);
  for (size_t d = 0; d < rank; ++d) {
    if (perm[d] < 0 || perm[d] >= static_cast<int64_t>(rank)) return std::nullopt;
    out_shape[d] = data.shape[perm[d]];
  }
  ConstValue out = Make(data.dtype, out_shape);
  auto in_strides = Strides(data.shape);
  std::vector<int64_t> pos(rank, 0);
  for (size_t i = 0; i < out.size(); ++i) {
    int64_t k = 0;
    for (size_t d = 0; d < rank; ++d) k += pos[d] * in_strides[perm[d]];
    CopyElement(data, static_cast<size_t>(k), out, i);
    for (size_t d = rank; d-- > 0;) {
      if (++pos[d] < out_shape[d]) break;
      pos[d] = 0;
    }
  }
  return One(std::move(out));
}

Out Reduce(const std::string& type, const ConstValue& data, std::vector<int64_t> axes,
           bool keepdims, bool noop_with_empty_axes) {
  int64_t rank = static_cast<int64_t>(data.shape.size());
  if (axes.empty()) {
    if (noop_with_empty_axes) return One(data);
    axes.resize(rank);
    std::iota(axes.begin(), axes.end(), 0);
  }
  std::vector<bool> reduced(rank, false);
  for (int64_t a : axes) {
    a = NormalizeAxis(a, rank);
    if (a < 0 || a >= rank) return std::nullopt;
    reduced[a] = true;
  }
  Shape kept_shape;
  for (int64_t d = 0; d < rank; ++d) kept_shape.push_back(reduced[d] ? 1 : data.shape[d]);
  ConstValue acc = Make(IsFloating(data.dtype) ? DType::kFloat64 : DType::kInt64, kept_shape);
  std::vector<bool> seen(acc.size(), false);
  auto kept_strides = Strides(kept_shape);
  std::vector<int64_t> pos(rank, 0);
  for (size_t i = 0; i < data.size(); ++i) {
    size_t k = 0;
    for (int64_t d = 0; d < rank; ++d)
      k += static_cast<size_t>(reduced[d] ? 0 : pos[d] * kept_strides[d]);
    double x = data.at(i);
    double cur = acc.at(k);
    double r;
    if (!seen[k]) {
      r = x;
    } else if (type == "ReduceSum" || type == "ReduceMean") {
      r = cur + x;
    } else if (type == "ReduceProd") {
      r = cur * x;
    } else if (type == "ReduceMax") {
      r = std::max(cur, x);
    } else {
      r = std::min(cur, x);
    }
    seen[k] = true;
    Set(acc, k, r);
    for (int64_t d = rank; d-- > 0;) {
      if (++pos[d] < data.shape[d]) break;
      pos[d] = 0;
    }
  }
  Shape out_shape;
  for (int64_t d = 0; d < rank; ++d) {
    if (!reduced[d]) {
      out_shape.push_back(data.shape[d]);
    } else if (keepdims) {
      out_shape.push_back(1);
    }
  }
  ConstValue out = Make(data.dtype, out_shape);
  uint64_t group = data.size() / std::max<size_t>(acc.size(), 1);
  for (size_t i = 0; i < out.size(); ++i) {
    double x = acc.at(i);
    if (type == "ReduceMean") x /= static_cast<double>(group);
    Set(out, i, x);
  }
  return One(std::move(out));
}

std::optional<Shape> ReshapeTarget(const Shape& in, const std::vector<int64_t>& target,
                                   bool allowzero) {
  Shape out(target.size());
  int64_t infer = -1;
  uint64_t known = 1;
  for (size_t i = 0; i < target.size(); ++i) {
    int64_t d = target[i];
    if (d == 0 && !allowzero) {
      if (i >= in.size()) return std::nullopt;
      d = in[i];
    }
    if (d == -1) {
      if (infer >= 0) return std::nullopt;
      infer = static_cast<int64_t>(i);
      continue;
    }
    if (d < 0) return std::nullopt;
    out[i] = d;
    if (!CheckedMul(known, static_cast<uint64_t>(d), &known)) return std::nullopt;
  }
  auto total = CountElements(in);
  if (!total) return std::nullopt;
  if (infer >= 0) {
    if (known == 0 || *total % known) return std::nullopt;
    out[infer] = static_cast<int64_t>(*total / known);
  } else if (known != *total) {
    return std::nullopt;
  }
  return out;
}

ConstValue WithShape(const ConstValue& v, Shape shape) {
  ConstValue out = v;
  out.shape = std::move(shape);
  return out;
}

ConstValue IntVector(const std::vector<int64_t>& xs) {
  ConstValue v;
  v.dtype = DType::kInt64;
  v.shape = {static_cast<int64_t>(xs.size())};
  v.ints = xs;
  return v;
}

std::vector<int64_t> AttrInts(const Op& op, const std::string& key) {
  const Attribute* a = op.attr(key);
  return a ? a->ints : std::vector<int64_t>{};
}

}  // namespace

std::optional<ConstValue> ValueFromTensorProto(const onnx::TensorProto& proto,
                                               uint64_t max_elements) {
  auto dtype = DTypeFromOnnx(proto.data_type());
  if (dtype == DType::kString && proto.data_location() != onnx::TensorProto::EXTERNAL &&
      static_cast<uint64_t>(proto.string_data_size()) <= max_elements) {
    ConstValue v;
    v.dtype = DType::kString;
    v.shape.assign(proto.dims().begin(), proto.dims().end());
    auto n = CountElements(v.shape);
    if (!n || *n != static_cast<uint64_t>(proto.string_data_size())) return std::nullopt;
    v.strings.assign(proto.string_data().begin(), proto.string_data().end());
    return v;
  }
  if (!dtype || *dtype == DType::kString || *dtype == DType::kComplex64 ||
      *dtype == DType::kComplex128 || *dtype == DType::kUndefined) {
    return std::nullopt;
  }
  if (proto.data_location() == onnx::TensorProto::EXTERNAL) return std::nullopt;
  Shape shape(proto.dims().begin(), proto.dims().end());
  auto n = CountElements(shape);
  if (!n || *n > max_elements) return std::nullopt;
  ConstValue v = Make(*dtype, shape);
  uint64_t esize = *ElementBytes(*dtype);
  if (proto.has_raw_data()) {
    const std::string& raw = proto.raw_data();
    if (raw.size() != *n * esize) return std::nullopt;
    const char* p = raw.data();
    for (uint64_t i = 0; i < *n; ++i, p += esize) {
      switch (*dtype) {
        case DType::kFloat32: {
          float x;
          std::memcpy(&x, p, 4);
          v.floats[i] = x;
          break;
        }
        case DType::kFloat64: {
          double x;
          std::memcpy(&x, p, 8);
          v.floats[i] = x;
          break;
        }
        case DType::kFloat16:
        case DType::kBFloat16: {
          uint16_t h;
          std::memcpy(&h, p, 2);
          float x;
          if (*dtype == DType::kBFloat16) {
            uint32_t bits = static_cast<uint32_t>(h) << 16;
            std::memcpy(&x, &bits, 4);
          } else {
            // IEEE half to float, enough precision for shape arithmetic.
            int exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
            double m = exp == 0 ? mant / 1024.0 * std::pow(2.0, -14)
                                : (1 + mant / 1024.0) * std::pow(2.0, exp - 15);
            if (exp == 31) m = mant ? NAN : INFINITY;
            x = static_cast<float>((h & 0x8000) ? -m : m);
          }
          v.floats[i] = x;
          break;
        }
        case DType::kInt64: {
          int64_t x;
          std::memcpy(&x, p, 8);
          v.ints[i] = x;
          break;
        }
        case DType::kUInt64: {
          uint64_t x;
          std::memcpy(&x, p, 8);
          v.ints[i] = static_cast<int64_t>(x);
          break;
        }
        case DType::kInt32: {
          int32_t x;
          std::memcpy(&x, p, 4);
          v.ints[i] = x;
          break;
        }
        case DType::kUInt32: {
          uint32_t x;
          std::memcpy(&x, p, 4);
          v.ints[i] = x;
          break;
        }
        case DType::kInt16: {
          int16_t x;
          std::memcpy(&x, p, 2);
          v.ints[i] = x;
          break;
        }
        case DType::kUInt16: {
          uint16_t x;
          std::memcpy(&x, p, 2);
          v.ints[i] = x;
          break;
        }
        case DType::kInt8: {
          int8_t x;
          std::memcpy(&x, p, 1);
          v.ints[i] = x;
          break;
        }
        case DType::kUInt8:
        case DType::kBool: {
          uint8_t x;
          std::memcpy(&x, p, 1);
          v.ints[i] = x;
          break;
        }
        default:
          return std::nullopt;
      }
    }
    return v;
  }
  auto take = [&](const auto& field) -> bool {
    if (static_cast<uint64_t>(field.size()) != *n) return false;
    for (int i = 0; i < field.size(); ++i)
      Set(v, static_cast<size_t>(i), static_cast<double>(field[i]));
    if (!IsFloating(*dtype)) {
      for (int i = 0; i < field.size(); ++i) v.ints[i] = static_cast<int64_t>(field[i]);
    }
    return true;
  };
  bool ok = false;
  switch (*dtype) {
    case DType::kFloat32:
      ok = take(proto.float_data());
      break;
    case DType::kFloat64:
      ok = take(proto.double_data());
      break;
    case DType::kInt64:
      ok = take(proto.int64_data());
      break;
    case DType::kUInt32:
    case DType::kUInt64:
      ok = take(proto.uint64_data());
      break;
    case DType::kFloat16:
    case DType::kBFloat16:
      return std::nullopt;  // bit patterns in int32_data; not needed here
    default:
      ok = take(proto.int32_data());
      break;
  }
  if (!ok) return *n == 0 ? std::optional<ConstValue>(v) : std::nullopt;
  return v;
}

onnx::TensorProto ValueToTensorProto(const ConstValue& value, const std::string& name) {
  onnx::TensorProto proto;
  proto.set_name(name);
  for (int64_t d : value.shape) proto.add_dims(d);
  // Shape inference reads values as int64/int32/float; widen other types to a neighbour of
  // the same kind so the bits stay meaningful.
  switch (value.dtype) {
    case DType::kFloat32:
    case DType::kFloat16:
    case DType::kBFloat16:
      proto.set_data_type(onnx::TensorProto::FLOAT);
      for (double x : value.floats) proto.add_float_data(static_cast<float>(x));
      break;
    case DType::kFloat64:
      proto.set_data_type(onnx::TensorProto::DOUBLE);
      for (double x : value.floats) proto.add_double_data(x);
      break;
    case DType::kInt64:
    case DType::kUInt64:
    case DType::kUInt32:
      proto.set_data_type(onnx::TensorProto::INT64);
      for (int64_t x : value.ints) proto.add_int64_data(x);
      break;
    default:
      proto.set_data_type(static_cast<int32_t>(value.dtype));
      for (int64_t x : value.ints) proto.add_int32_data(static_cast<int32_t>(x));
      break;
  }
  return proto;
}

std::optional<std::vector<ConstValue>> EvaluateOp(const Op& op, int64_t opset,
                                                  const std::vector<const Tensor*>& inputs) {
  const std::string& t = op.type;
  // Ops whose result needs only input shapes.
  if (t == "Shape" && !inputs.empty() && inputs[0]) {
    const Shape& s = inputs[0]->shape;
    int64_t rank = static_cast<int64_t>(s.size());
    int64_t start = std::clamp<int64_t>(NormalizeAxis(op.attr_int("start", 0), rank), 0, rank);
    int64_t end = std::clamp<int64_t>(NormalizeAxis(op.attr_int("end", rank), rank), 0, rank);
    return One(
        IntVector(std::vector<int64_t>(s.begin() + start, s.begin() + std::max(start, end))));
  }
  if (t == "Size" && !inputs.empty() && inputs[0]) {
    ConstValue v;
    v.dtype = DType::kInt64;
    v.ints = {static_cast<int64_t>(inputs[0]->element_count())};
    return One(std::move(v));
  }
  // Everything else needs the values of its present inputs.
  Values in;
  for (const Tensor* x : inputs) {
    if (!x) {
      in.push_back(nullptr);
      continue;
    }
    if (!x->value || x->value->dtype == DType::kString) return std::nullopt;
    in.push_back(&*x->value);
  }
  auto present = [&](size_t i) { return i < in.size() && in[i]; };
  if (!present(0)) return std::nullopt;
  const ConstValue& a = *in[0];

  if (t == "Identity") return One(a);
  if (t == "Cast") {
    auto to = DTypeFromOnnx(static_cast<int32_t>(op.attr_int("to", 0)));
    if (!to || !ElementBytes(*to) || (!IsFloating(*to) && !IsInteger(*to))) return std::nullopt;
    ConstValue out = Make(*to, a.shape);
    for (size_t i = 0; i < a.size(); ++i) {
      if (!IsFloating(*to) && !IsFloating(a.dtype)) {
        out.ints[i] = *to == DType::kBool ? a.ints[i] != 0 : a.ints[i];
      } else {
        Set(out, i, a.at(i));
      }
    }
    return One(std::move(out));
  }
  if (in.size() == 2 && present(1)) {
    if (auto r = Binary(t, in)) return r;
  }
  if (in.size() == 1) {
    if (auto r = Unary(t, a)) return r;
  }
  if (t == "Mod" && present(1)) {
    bool fmod = op.attr_int("fmod", 0) != 0;
    return Elementwise(
        in, a.dtype, [](const auto& x) { return std::fmod(x[0], x[1]); },
        [fmod](const std::vector<int64_t>& x) -> int64_t {
          if (x[1] == 0 || x[1] == -1) return 0;  // INT64_MIN % -1 traps
          int64_t r = x[0] % x[1];
          if (!fmod && r != 0 && ((r < 0) != (x[1] < 0))) r += x[1];
          return r;
        });
  }
  if ((t == "Min" || t == "Max" || t == "Sum") && !in.empty()) {
    for (const ConstValue* v : in) {
      if (!v) return std::nullopt;
    }
    bool is_min = t == "Min", is_sum = t == "Sum";
    return Elementwise(
        in, a.dtype,
        [is_min, is_sum](const std::vector<double>& x) {
          double r = x[0];
          for (size_t i = 1; i < x.size(); ++i)
            r = is_sum ? r + x[i] : is_min ? std::min(r, x[i]) : std::max(r, x[i]);
          return r;
        },
        [is_min, is_sum](const std::vector<int64_t>& x) {
          int64_t r = x[0];
          for (size_t i = 1; i < x.size(); ++i)
            r = is_sum ? WrapAdd(r, x[i]) : is_min ? std::min(r, x[i]) : std::max(r, x[i]);
          return r;
        });
  }
  if (t == "Where" && present(1) && present(2)) {
    return Elementwise(
        in, in[1]->dtype, [](const auto& x) { return x[0] != 0 ? x[1] : x[2]; },
        [](const std::vector<int64_t>& x) { return x[0] != 0 ? x[1] : x[2]; });
  }
  if (t == "Gather" && present(1)) return Gather(a, *in[1], op.attr_int("axis", 0));
  if (t == "Slice") {
    if (opset < 10) {
      return Slice(a, AttrInts(op, "starts"), AttrInts(op, "ends"), AttrInts(op, "axes"), {});
    }
    if (!present(1) || !present(2)) return std::nullopt;
    return Slice(a, Ints(*in[1]), Ints(*in[2]), present(3) ? Ints(*in[3]) : std::vector<int64_t>{},
                 present(4) ? Ints(*in[4]) : std::vector<int64_t>{});
  }
  if (t == "Concat") {
    for (const ConstValue* v : in) {
      if (!v) return std::nullopt;
    }
    return Concat(in, op.attr_int("axis", 0));
  }
  if (t == "Unsqueeze" || t == "Squeeze") {
    std::vector<int64_t> axes =
        opset >= 13 ? (present(1) ? Ints(*in[1]) : std::vector<int64_t>{}) : AttrInts(op, "axes");
    Shape s = a.shape;
    if (t == "Unsqueeze") {
      int64_t rank = static_cast<int64_t>(s.size() + axes.size());
      std::vector<int64_t> norm;
      for (int64_t ax : axes) norm.push_back(NormalizeAxis(ax, rank));
      std::sort(norm.begin(), norm.end());
      for (int64_t ax : norm) {
        if (ax < 0 || ax > static_cast<int64_t>(s.size())) return std::nullopt;
        s.insert(s.begin() + ax, 1);
      }
    } else {
      int64_t rank = static_cast<int64_t>(s.size());
      std::vector<bool> drop(rank, false);
      for (int64_t ax : axes) {
        ax = NormalizeAxis(ax, rank);
        if (ax < 0 || ax >= rank || s[ax] != 1) return std::nullopt;
        drop[ax] = true;
      }
      Shape kept;
      for (int64_t d = 0; d < rank; ++d) {
        if (axes.empty() ? s[d] != 1 : !drop[d]) kept.push_back(s[d]);
      }
      s = kept;
    }
    return One(WithShape(a, s));
  }
  if (t == "Flatten") {
    int64_t rank = static_cast<int64_t>(a.shape.size());
    int64_t axis = NormalizeAxis(op.attr_int("axis", 1), rank);
    if (axis < 0 || axis > rank) return std::nullopt;
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < rank; ++d) (d < axis ? outer : inner) *= a.shape[d];
    return One(WithShape(a, {outer, inner}));
  }
  if (t == "Reshape") {
    std::vector<int64_t> target =
        opset >= 5 ? (present(1) ? Ints(*in[1]) : std::vector<int64_t>{}) : AttrInts(op, "shape");
    if (opset >= 5 && !present(1)) return std::nullopt;
    auto s = ReshapeTarget(a.shape, target, op.attr_int("allowzero", 0) != 0);
    if (!s) return std::nullopt;
    return One(WithShape(a, *s));
  }
  if (t == "Expand" && present(1)) {
    Shape target = Ints(*in[1]);
    auto s = Broadcast({&a.shape, &target});
    if (!s || !Small(*s)) return std::nullopt;
    ConstValue out = Make(a.dtype, *s);
    auto idx = BroadcastIndex(a.shape, *s);
    for (size_t i = 0; i < out.size(); ++i) CopyElement(a, idx[i], out, i);
    return One(std::move(out));
  }
  if (t == "Tile" && present(1)) {
    std::vector<int64_t> reps = Ints(*in[1]);
    if (reps.size() != a.shape.size()) return std::nullopt;
    Shape s = a.shape;
    for (size_t d = 0; d < s.size(); ++d) {
      if (reps[d] < 0) return std::nullopt;
      s[d] *= reps[d];
    }
    if (!Small(s)) return std::nullopt;
    ConstValue out = Make(a.dtype, s);
    auto in_strides = Strides(a.shape);
    std::vector<int64_t> pos(s.size(), 0);
    for (size_t i = 0; i < out.size(); ++i) {
      int64_t k = 0;
      for (size_t d = 0; d < s.size(); ++d) k += (pos[d] % a.shape[d]) * in_strides[d];
      CopyElement(a, static_cast<size_t>(k), out, i);
      for (size_t d = s.size(); d-- > 0;) {
        if (++pos[d] < s[d]) break;
        pos[d] = 0;
      }
    }
    return One(std::move(out));
  }
  if (t == "Transpose") return Transpose(a, AttrInts(op, "perm"));
  if (t == "ConstantOfShape") {
    Shape s = Ints(a);
    for (int64_t d : s) {
      if (d < 0) return std::nullopt;
    }
    if (!Small(s)) return std::nullopt;
    ConstValue fill;
    fill.dtype = DType::kFloat32;
    fill.floats = {0.0};
    if (const Attribute* v = op.attr("value"); v && v->kind == Attribute::Kind::kTensor) {
      if (!v->tensor || v->tensor->size() != 1 || !ElementBytes(v->tensor->dtype)) {
        return std::nullopt;
      }
      fill = *v->tensor;
    }
    ConstValue out = Make(fill.dtype, s);
    for (size_t i = 0; i < out.size(); ++i) Set(out, i, fill.at(0));
    return One(std::move(out));
  }
  if (t == "Range" && present(1) && present(2)) {
    if (a.size() != 1 || in[1]->size() != 1 || in[2]->size() != 1 ||
        IsFloating(a.dtype) != IsFloating(in[1]->dtype) ||
        IsFloating(a.dtype) != IsFloating(in[2]->dtype)) {
      return std::nullopt;
    }
    double start = a.at(0), limit = in[1]->at(0), delta = in[2]->at(0);
    if (delta == 0) return std::nullopt;
    double count = std::max(std::ceil((limit - start) / delta), 0.0);
    if (count > static_cast<double>(kMaxEvalElements)) return std::nullopt;
    ConstValue out = Make(a.dtype, {static_cast<int64_t>(count)});
    for (size_t i = 0; i < out.size(); ++i) {
      if (IsFloating(a.dtype)) {
        out.floats[i] = start + static_cast<double>(i) * delta;
      } else {
        out.ints[i] = WrapAdd(a.ints[0], WrapMul(static_cast<int64_t>(i), in[2]->ints[0]));
      }
    }
    return One(std::move(out));
  }
  if (t.rfind("Reduce", 0) == 0 && (t == "ReduceSum" || t == "ReduceProd" || t == "ReduceMax" ||
                                    t == "ReduceMin" || t == "ReduceMean")) {
    bool axes_input = (t == "ReduceSum" && opset >= 13) || opset >= 18;
    std::vector<int64_t> axes =
        axes_input ? (present(1) ? Ints(*in[1]) : std::vector<int64_t>{}) : AttrInts(op, "axes");
    return Reduce(t, a, axes, op.attr_int("keepdims", 1) != 0,
                  op.attr_int("noop_with_empty_axes", 0) != 0);
  }
  if (t == "NonZero") {
    int64_t rank = static_cast<int64_t>(a.shape.size());
    std::vector<std::vector<int64_t>> coords;
    std::vector<int64_t> pos(rank, 0);
    for (size_t i = 0; i < a.size(); ++i) {
      if (a.at(i) != 0) coords.push_back(pos);
      for (int64_t d = rank; d-- > 0;) {
        if (++pos[d] < a.shape[d]) break;
        pos[d] = 0;
      }
    }
    ConstValue out = Make(DType::kInt64, {rank, static_cast<int64_t>(coords.size())});
    for (int64_t d = 0; d < rank; ++d) {
      for (size_t k = 0; k < coords.size(); ++k) out.ints[d * coords.size() + k] = coords[k][d];
    }
    return One(std::move(out));
  }
  return std::nullopt;
}

}  // namespace vramsim
