#include "importer/validate.h"

#include <cmath>
#include <map>
#include <set>

namespace vramsim {
namespace {

using Shape = std::vector<int64_t>;

std::string Num(int64_t v) { return std::to_string(v); }

std::string List(const std::vector<int64_t>& xs) {
  std::string s = "[";
  for (size_t i = 0; i < xs.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(xs[i]);
  }
  return s + "]";
}

bool Has(const std::vector<const Tensor*>& in, size_t i) {
  return i < in.size() && in[i] && !in[i]->is_sequence;
}

int64_t Rank(const Tensor* t) { return static_cast<int64_t>(t->shape.size()); }

const std::vector<int64_t>* IntsAttr(const Op& op, const std::string& key) {
  const Attribute* a = op.attr(key);
  return a && a->kind == Attribute::Kind::kInts ? &a->ints : nullptr;
}

// Integer values of a known input (shape arithmetic); null when unknown or floating.
const std::vector<int64_t>* KnownInts(const std::vector<const Tensor*>& in, size_t i) {
  if (!Has(in, i) || !in[i]->value || IsFloating(in[i]->value->dtype)) return nullptr;
  if (in[i]->value->dtype == DType::kString) return nullptr;
  return &in[i]->value->ints;
}

// Convolution and pooling: what ONNX's convPoolShapeInference divides by and multiplies.
Status ValidateConvPool(const Op& op, const std::vector<const Tensor*>& in) {
  static const std::map<std::string, int> kWeightInput = {
      {"Conv", 1},       {"ConvInteger", 1}, {"QLinearConv", 3},  {"ConvTranspose", 1},
      {"DeformConv", 1}, {"MaxPool", -1},    {"AveragePool", -1}, {"LpPool", -1},
      {"MaxUnpool", -1}, {"MaxRoiPool", -1}};
  auto it = kWeightInput.find(op.type);
  if (it == kWeightInput.end()) return {};
  if (!Has(in, 0)) return {};
  const Tensor* x = in[0];
  int64_t rank = Rank(x);
  if (rank < 3) {
    return Error{op.type + " needs an input of rank 3 or more (N, C, spatial...), got rank " +
                 Num(rank)};
  }
  int64_t spatial = rank - 2;
  auto check_list = [&](const char* key, size_t want, int64_t lo) -> Status {
    const auto* v = IntsAttr(op, key);
    if (!v) return {};
    if (v->size() != want) {
      return Error{op.type + " attribute " + key + " " + List(*v) + " has " +
                   std::to_string(v->size()) + " values; the input's spatial rank needs " +
                   std::to_string(want)};
    }
    for (int64_t x : *v) {
      if (x < lo || x > kMaxAttributeValue) {
        return Error{op.type + " attribute " + key + " " + List(*v) + " must hold values from " +
                     Num(lo) + " to " + Num(kMaxAttributeValue)};
      }
    }
    return {};
  };
  const size_t s = static_cast<size_t>(spatial);
  if (auto st = check_list("kernel_shape", s, 1); !st) return st;
  if (auto st = check_list("strides", s, 1); !st) return st;
  if (auto st = check_list("dilations", s, 1); !st) return st;
  if (auto st = check_list("pads", 2 * s, 0); !st) return st;
  if (auto st = check_list("output_padding", s, 0); !st) return st;
  if (auto st = check_list("output_shape", s, 0); !st) return st;
  if (const Attribute* p = op.attr("p"); p && p->kind == Attribute::Kind::kInt && p->i < 1) {
    return Error{op.type + " attribute p must be at least 1, got " + Num(p->i)};
  }
  const Attribute* g = op.attr("group");
  int64_t group = g && g->kind == Attribute::Kind::kInt ? g->i : 1;
  if (group < 1 || group > kMaxAttributeValue) {
    return Error{op.type + " attribute group must be at least 1, got " + Num(group)};
  }
  int wi = it->second;
  if (wi < 0 || !Has(in, static_cast<size_t>(wi))) return {};
  const Tensor* w = in[static_cast<size_t>(wi)];
  if (Rank(w) != rank) {
    return Error{op.type + " weight has rank " + Num(Rank(w)) + " but the input has rank " +
                 Num(rank)};
  }
  for (int64_t d = 2; d < rank; ++d) {
    if (w->shape[d] > kMaxAttributeValue) {
      return Error{op.type + " weight has kernel size " + Num(w->shape[d]) + ", over " +
                   Num(kMaxAttributeValue)};
    }
  }
  int64_t channels = x->shape[1];
  if (op.type == "ConvTranspose") {
    if (w->shape[0] != channels || channels % group != 0) {
      return Error{"ConvTranspose with group " + Num(group) + " on " + Num(channels) +
                   " input channels needs a weight of " + Num(channels) +
                   " input channels divisible by the group; the weight has " + Num(w->shape[0])};
    }
  } else if (channels % group != 0 || w->shape[1] * group != channels || w->shape[0] % group != 0) {
    return Error{op.type + " with group " + Num(group) + " on " + Num(channels) +
                 " input channels: the weight's shape " + List(w->shape) +
                 " does not split into that many groups"};
  }
  return {};
}

// The range an "axis" attribute may take for an input of rank r.
std::pair<int64_t, int64_t> AxisRange(const std::string& type, int64_t r) {
  if (type == "Flatten") return {-r, r};
  if (type == "OneHot") return {-(r + 1), r};
  if (r == 0) return {-1, 0};
  return {-r, r - 1};
}

Status ValidateAxes(const Op& op, const std::vector<const Tensor*>& in) {
  if (!Has(in, 0)) return {};
  int64_t r = Rank(in[0]);
  if (const Attribute* a = op.attr("axis"); a && a->kind == Attribute::Kind::kInt) {
    auto [lo, hi] = AxisRange(op.type, r);
    if (a->i < lo || a->i > hi) {
      return Error{op.type + " axis " + Num(a->i) + " is outside [" + Num(lo) + ", " + Num(hi) +
                   "] for its input of rank " + Num(r)};
    }
  }
  for (const char* key : {"batch_axis", "time_axis"}) {
    if (const Attribute* a = op.attr(key); a && a->kind == Attribute::Kind::kInt) {
      if (a->i < 0 || a->i > 1) {
        return Error{op.type + " " + key + " must be 0 or 1, got " + Num(a->i)};
      }
    }
  }
  if (const auto* axes = IntsAttr(op, "axes")) {
    int64_t out_rank = op.type == "Unsqueeze" ? r + static_cast<int64_t>(axes->size()) : r;
    std::set<int64_t> seen;
    for (int64_t ax : *axes) {
      if (ax < -out_rank || ax >= std::max<int64_t>(out_rank, 1)) {
        return Error{op.type + " axes " + List(*axes) + " reach outside rank " + Num(out_rank)};
      }
      if (!seen.insert(ax < 0 ? ax + out_rank : ax).second) {
        return Error{op.type + " axes " + List(*axes) + " name one axis twice"};
      }
    }
  }
  if (op.type == "Transpose") {
    if (const auto* perm = IntsAttr(op, "perm")) {
      std::set<int64_t> seen(perm->begin(), perm->end());
      bool ok = static_cast<int64_t>(perm->size()) == r && seen.size() == perm->size() &&
                (seen.empty() || (*seen.begin() >= 0 && *seen.rbegin() < r));
      if (!ok) {
        return Error{"Transpose perm " + List(*perm) + " is not a permutation of the input's " +
                     Num(r) + " axes"};
      }
    }
  }
  return {};
}

Status ValidateSizes(const Op& op, const std::vector<const Tensor*>& in) {
  const std::string& t = op.type;
  if (t == "DepthToSpace" || t == "SpaceToDepth") {
    int64_t b = op.attr_int("blocksize", 0);
    if (b < 1 || b > kMaxAttributeValue) {
      return Error{t + " blocksize must be at least 1, got " + Num(b)};
    }
  }
  if (t == "LRN" && op.attr_int("size", 1) < 1) {
    return Error{"LRN size must be at least 1, got " + Num(op.attr_int("size", 1))};
  }
  if (t == "Reshape") {
    const std::vector<int64_t>* target = KnownInts(in, 1);
    if (!target) target = IntsAttr(op, "shape");  // opset < 5
    if (target) {
      uint64_t known = 1;
      int inferred = 0;
      for (int64_t d : *target) {
        if (d == -1) {
          ++inferred;
          continue;
        }
        if (d < 0 || d > kMaxDimension) {
          return Error{"Reshape target " + List(*target) + " holds an invalid dimension " + Num(d)};
        }
        if (d > 0 && !CheckedMul(known, static_cast<uint64_t>(d), &known)) {
          return Error{"Reshape target " + List(*target) + " overflows 64 bits"};
        }
      }
      if (inferred > 1) return Error{"Reshape target " + List(*target) + " has more than one -1"};
      if (target->size() > kMaxRank) {
        return Error{"Reshape target has " + std::to_string(target->size()) + " dimensions"};
      }
    }
  }
  if (t == "Expand" || t == "ConstantOfShape") {
    const std::vector<int64_t>* shape = KnownInts(in, t == "Expand" ? 1 : 0);
    if (shape) {
      if (shape->size() > kMaxRank) {
        return Error{t + " shape has " + std::to_string(shape->size()) + " dimensions"};
      }
      for (int64_t d : *shape) {
        if (d < 0 || d > kMaxDimension) {
          return Error{t + " shape " + List(*shape) + " holds an invalid dimension " + Num(d)};
        }
      }
    }
  }
  if (t == "Tile" && Has(in, 0)) {
    if (const auto* reps = KnownInts(in, 1)) {
      if (static_cast<int64_t>(reps->size()) != Rank(in[0])) {
        return Error{"Tile repeats " + List(*reps) + " do not match the input's rank " +
                     Num(Rank(in[0]))};
      }
      for (size_t d = 0; d < reps->size(); ++d) {
        uint64_t n = 0;
        if ((*reps)[d] < 0 ||
            !CheckedMul(static_cast<uint64_t>(in[0]->shape[d]), static_cast<uint64_t>((*reps)[d]),
                        &n) ||
            n > static_cast<uint64_t>(kMaxDimension)) {
          return Error{"Tile repeats " + List(*reps) + " are negative or too large"};
        }
      }
    }
  }
  if (t == "Range" && Has(in, 0) && Has(in, 1) && Has(in, 2)) {
    const Tensor* v[3] = {in[0], in[1], in[2]};
    bool known = true;
    double x[3] = {0, 0, 0};
    for (int k = 0; k < 3; ++k) {
      if (!v[k]->value || v[k]->value->size() != 1 || v[k]->value->dtype == DType::kString) {
        known = false;
        break;
      }
      x[k] = v[k]->value->at(0);
    }
    if (known) {
      double count = (x[1] - x[0]) / x[2];
      if (!std::isfinite(x[0]) || !std::isfinite(x[1]) || !std::isfinite(x[2]) || x[2] == 0 ||
          !(count < static_cast<double>(kMaxDimension))) {
        return Error{"Range(" + std::to_string(x[0]) + ", " + std::to_string(x[1]) + ", " +
                     std::to_string(x[2]) + ") is not a range of at most 2^48 elements"};
      }
    }
  }
  if ((t == "Resize" || t == "Upsample") && Has(in, 0)) {
    const Tensor* scales = nullptr;
    if (t == "Upsample" && Has(in, 1)) scales = in[1];
    if (t == "Resize" && Has(in, 2)) scales = in[2];
    if (t == "Resize" && op.attr("axes")) scales = nullptr;  // opset 18 axes: left to ONNX
    if (scales && scales->value && IsFloating(scales->value->dtype)) {
      const auto& f = scales->value->floats;
      for (size_t d = 0; d < f.size(); ++d) {
        double dim = d < in[0]->shape.size() ? static_cast<double>(in[0]->shape[d]) : 1.0;
        if (!std::isfinite(f[d]) || f[d] < 0 || dim * f[d] > static_cast<double>(kMaxDimension)) {
          return Error{t + " scale " + std::to_string(f[d]) + " is not a valid scale"};
        }
      }
    }
    const Tensor* sizes = t == "Resize" && Has(in, 3) ? in[3] : nullptr;
    if (sizes && sizes->value && !IsFloating(sizes->value->dtype)) {
      for (int64_t d : sizes->value->ints) {
        if (d < 0 || d > kMaxDimension) {
          return Error{"Resize sizes " + List(sizes->value->ints) + " hold an invalid size"};
        }
      }
    }
  }
  if (t == "OneHot" && Has(in, 1) && in[1]->value && in[1]->value->size() == 1) {
    double depth = in[1]->value->at(0);
    if (!(depth >= 1 && depth <= static_cast<double>(kMaxDimension))) {
      return Error{"OneHot depth " + std::to_string(depth) + " is not a valid size"};
    }
  }
  if (t == "Pad") {
    const std::vector<int64_t>* pads = IntsAttr(op, "pads");
    if (!pads) pads = KnownInts(in, 1);
    if (pads) {
      for (int64_t p : *pads) {
        if (p < -kMaxDimension || p > kMaxDimension) {
          return Error{"Pad pads " + List(*pads) + " hold an absurd value"};
        }
      }
    }
  }
  return {};
}

// Inputs bound to one type parameter of the schema (T in Concat(T...)) must share a type.
Status ValidateTypes(const Op& op, const std::vector<const Tensor*>& in,
                     const onnx::OpSchema& schema) {
  const auto& formals = schema.inputs();
  if (formals.empty()) return {};
  std::set<std::string> params;
  for (const auto& c : schema.typeConstraintParams()) params.insert(c.type_param_str);
  std::map<std::string, std::pair<DType, size_t>> bound;
  for (size_t i = 0; i < in.size(); ++i) {
    size_t f = std::min(i, formals.size() - 1);
    const auto& formal = formals[f];
    if (i >= formals.size() &&
        formal.GetOption() != onnx::OpSchema::FormalParameterOption::Variadic) {
      break;
    }
    if (formal.GetOption() == onnx::OpSchema::FormalParameterOption::Variadic &&
        !formal.GetIsHomogeneous()) {
      continue;
    }
    if (!in[i] || in[i]->is_sequence || !params.count(formal.GetTypeStr())) continue;
    auto [it, fresh] = bound.emplace(formal.GetTypeStr(), std::make_pair(in[i]->dtype, i));
    if (!fresh && it->second.first != in[i]->dtype) {
      return Error{op.type + " inputs " + std::to_string(it->second.second) + " and " +
                   std::to_string(i) + " must have one element type (" + formal.GetTypeStr() +
                   "), got " + std::string(DTypeName(it->second.first)) + " and " +
                   std::string(DTypeName(in[i]->dtype))};
    }
  }
  return {};
}

}  // namespace

Status ValidateOp(const Op& op, const std::vector<const Tensor*>& inputs,
                  const onnx::OpSchema* schema) {
  if (schema) {
    if (auto s = ValidateTypes(op, inputs, *schema); !s) return s;
  }
  if (auto s = ValidateConvPool(op, inputs); !s) return s;
  if (auto s = ValidateAxes(op, inputs); !s) return s;
  return ValidateSizes(op, inputs);
}

Status CheckOutputs(const Op& op, const std::vector<const Tensor*>& in,
                    const std::vector<const Tensor*>& out) {
  if (!Has(in, 0) || out.empty() || !out[0] || out[0]->is_sequence) return {};
  const Tensor* x = in[0];
  const Tensor* y = out[0];
  const std::string& t = op.type;
  if (t == "Reshape" || t == "Flatten" || t == "Squeeze" || t == "Unsqueeze") {
    if (x->element_count() != y->element_count()) {
      return Error{t + " of a " + List(x->shape) + " tensor to " + List(y->shape) +
                   " changes the element count"};
    }
  }
  if (t == "Expand") {
    if (y->shape.size() < x->shape.size()) {
      return Error{"Expand of " + List(x->shape) + " to " + List(y->shape) + " drops dimensions"};
    }
    size_t off = y->shape.size() - x->shape.size();
    for (size_t d = 0; d < x->shape.size(); ++d) {
      if (x->shape[d] != 1 && x->shape[d] != y->shape[off + d]) {
        return Error{"Expand of " + List(x->shape) + " to " + List(y->shape) +
                     " is not a broadcast"};
      }
    }
  }
  if (t == "Tile") {
    const auto* reps = KnownInts(in, 1);
    if (reps && reps->size() == x->shape.size() && y->shape.size() == x->shape.size()) {
      for (size_t d = 0; d < reps->size(); ++d) {
        if (y->shape[d] != x->shape[d] * (*reps)[d]) {
          return Error{"Tile of " + List(x->shape) + " by " + List(*reps) + " gave " +
                       List(y->shape)};
        }
      }
    }
  }
  return {};
}

size_t Utf8SequenceLength(std::string_view text, size_t i) {
  if (i >= text.size()) return 0;
  auto c = static_cast<unsigned char>(text[i]);
  if (c < 0x80) return 1;
  size_t len = c >= 0xc2 && c <= 0xdf   ? 2
               : c >= 0xe0 && c <= 0xef ? 3
               : c >= 0xf0 && c <= 0xf4 ? 4
                                        : 0;
  if (len == 0 || i + len > text.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((static_cast<unsigned char>(text[i + k]) & 0xc0) != 0x80) return 0;
  }
  auto c1 = static_cast<unsigned char>(text[i + 1]);
  if ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 >= 0xa0) || (c == 0xf0 && c1 < 0x90) ||
      (c == 0xf4 && c1 >= 0x90)) {
    return 0;  // overlong, surrogate or above U+10FFFF
  }
  return len;
}

std::string Printable(const std::string& text, size_t max_bytes) {
  std::string out;
  auto hex = [&out](unsigned char c) {
    static const char* digits = "0123456789abcdef";
    out += "\\x";
    out += digits[c >> 4];
    out += digits[c & 15];
  };
  size_t i = 0;
  while (i < text.size()) {
    if (out.size() >= max_bytes) {
      out += "...";
      break;
    }
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    // A well-formed UTF-8 sequence (names may be non-ASCII) passes; anything else is escaped.
    size_t len = Utf8SequenceLength(text, i);
    bool ok = c >= 0x80 && len > 0;  // control characters are escaped
    if (ok) {
      out.append(text, i, len);
      i += len;
    } else {
      hex(c);
      ++i;
    }
  }
  return out;
}

}  // namespace vramsim
