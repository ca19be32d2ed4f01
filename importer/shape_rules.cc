#include "importer/shape_rules.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <set>

namespace vramsim {
namespace {

using Shape = std::vector<int64_t>;
using Rule = Result<std::vector<ShapeResult>>;

Rule Fail(const std::string& why) { return Error{why}; }
ShapeResult Plain(DType dtype, Shape shape) {
  ShapeResult r;
  r.dtype = dtype;
  r.shape = std::move(shape);
  return r;
}
Rule One(DType dtype, Shape shape) {
  return std::vector<ShapeResult>{Plain(dtype, std::move(shape))};
}

const ConstValue* ValueOf(const std::vector<const Tensor*>& in, size_t i) {
  return i < in.size() && in[i] && in[i]->value ? &*in[i]->value : nullptr;
}
bool Has(const std::vector<const Tensor*>& in, size_t i) { return i < in.size() && in[i]; }

int64_t Norm(int64_t axis, int64_t rank) { return axis < 0 ? axis + rank : axis; }

Rule Reduce(const Op& op, const std::vector<const Tensor*>& in) {
  const Tensor& x = *in[0];
  int64_t rank = static_cast<int64_t>(x.shape.size());
  std::vector<int64_t> axes;
  if (Has(in, 1)) {
    const ConstValue* v = ValueOf(in, 1);
    if (!v) return Fail("reduction axes are computed at run time");
    for (size_t i = 0; i < v->size(); ++i) axes.push_back(static_cast<int64_t>(v->at(i)));
  }
  if (axes.empty() && op.attr_int("noop_with_empty_axes", 0)) return One(x.dtype, x.shape);
  std::vector<bool> reduced(rank, axes.empty());
  for (int64_t a : axes) {
    a = Norm(a, rank);
    if (a < 0 || a >= rank) return Fail("reduction axis out of range");
    reduced[a] = true;
  }
  bool keep = op.attr_int("keepdims", 1) != 0;
  Shape out;
  for (int64_t d = 0; d < rank; ++d) {
    if (!reduced[d]) {
      out.push_back(x.shape[d]);
    } else if (keep) {
      out.push_back(1);
    }
  }
  return One(x.dtype, out);
}

Rule Einsum(const Op& op, const std::vector<const Tensor*>& in) {
  const Attribute* eq = op.attr("equation");
  if (!eq) return Fail("Einsum has no equation");
  std::string e;
  for (char c : eq->s) {
    if (c != ' ') e += c;
  }
  size_t arrow = e.find("->");
  std::string lhs = e.substr(0, arrow);
  std::vector<std::string> terms;
  size_t pos = 0;
  while (true) {
    size_t comma = lhs.find(',', pos);
    terms.push_back(lhs.substr(pos, comma - pos));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  if (terms.size() != in.size())
    return Fail("Einsum equation names " + std::to_string(terms.size()) + " operands");
  std::map<char, int64_t> size;
  std::map<char, int> count;
  Shape ellipsis;
  for (size_t k = 0; k < terms.size(); ++k) {
    if (!in[k]) return Fail("Einsum operand missing");
    const Shape& s = in[k]->shape;
    const std::string& t = terms[k];
    size_t dots = t.find("...");
    size_t letters = t.size() - (dots == std::string::npos ? 0 : 3);
    if (letters > s.size() || (dots == std::string::npos && letters != s.size())) {
      return Fail("Einsum term '" + t + "' does not match operand rank");
    }
    size_t ell_rank = s.size() - letters;
    size_t d = 0;
    for (size_t i = 0; i < t.size(); ++i) {
      if (t.compare(i, 3, "...") == 0) {
        Shape es(s.begin() + d, s.begin() + d + ell_rank);
        // Broadcast ellipsis dims across operands.
        if (es.size() > ellipsis.size())
          ellipsis.insert(ellipsis.begin(), es.size() - ellipsis.size(), 1);
        for (size_t j = 0; j < es.size(); ++j) {
          int64_t& o = ellipsis[ellipsis.size() - es.size() + j];
          if (o == 1) o = es[j];
        }
        d += ell_rank;
        i += 2;
        continue;
      }
      char c = t[i];
      int64_t dim = s[d++];
      auto it = size.find(c);
      if (it == size.end() || it->second == 1) size[c] = dim;
      ++count[c];
    }
  }
  Shape out;
  if (arrow != std::string::npos) {
    std::string rhs = e.substr(arrow + 2);
    for (size_t i = 0; i < rhs.size(); ++i) {
      if (rhs.compare(i, 3, "...") == 0) {
        out.insert(out.end(), ellipsis.begin(), ellipsis.end());
        i += 2;
        continue;
      }
      if (!size.count(rhs[i])) return Fail("Einsum output letter not in inputs");
      out.push_back(size[rhs[i]]);
    }
  } else {
    // Implicit form: ellipsis dims, then letters seen once, alphabetically.
    out = ellipsis;
    for (const auto& [c, n] : count) {
      if (n == 1) out.push_back(size[c]);
    }
  }
  return One(in[0]->dtype, out);
}

Rule OneHot(const Op& op, const std::vector<const Tensor*>& in) {
  const ConstValue* depth = ValueOf(in, 1);
  if (!depth || depth->size() != 1 || !Has(in, 2))
    return Fail("OneHot depth is computed at run time");
  Shape s = in[0]->shape;
  int64_t rank = static_cast<int64_t>(s.size()) + 1;
  int64_t axis = Norm(op.attr_int("axis", -1), rank);
  if (axis < 0 || axis >= rank) return Fail("OneHot axis out of range");
  s.insert(s.begin() + axis, static_cast<int64_t>(depth->at(0)));
  return One(in[2]->dtype, s);
}

Rule Compress(const Op& op, const std::vector<const Tensor*>& in) {
  const ConstValue* cond = ValueOf(in, 1);
  if (!cond) return Fail("Compress condition is computed at run time");
  int64_t kept = 0;
  for (size_t i = 0; i < cond->size(); ++i) kept += cond->at(i) != 0;
  const Attribute* axis = op.attr("axis");
  if (!axis) return One(in[0]->dtype, {kept});
  Shape s = in[0]->shape;
  int64_t a = Norm(axis->i, static_cast<int64_t>(s.size()));
  if (a < 0 || a >= static_cast<int64_t>(s.size())) return Fail("Compress axis out of range");
  s[a] = kept;
  return One(in[0]->dtype, s);
}

Rule NonZero(const std::vector<const Tensor*>& in) {
  const ConstValue* x = ValueOf(in, 0);
  if (!x) return Fail("NonZero's result depends on values computed at run time");
  int64_t n = 0;
  for (size_t i = 0; i < x->size(); ++i) n += x->at(i) != 0;
  return One(DType::kInt64, {static_cast<int64_t>(in[0]->shape.size()), n});
}

Rule NonMaxSuppression(const Op& op, const std::vector<const Tensor*>& in) {
  const ConstValue* boxes = ValueOf(in, 0);
  const ConstValue* scores = ValueOf(in, 1);
  if (!boxes || !scores)
    return Fail("NonMaxSuppression's result depends on values computed at run time");
  int64_t max_out = 0;
  double iou_th = 0, score_th = -INFINITY;
  if (Has(in, 2)) {
    if (!ValueOf(in, 2)) return Fail("max_output_boxes_per_class is computed at run time");
    max_out = static_cast<int64_t>(ValueOf(in, 2)->at(0));
  }
  if (Has(in, 3)) {
    if (!ValueOf(in, 3)) return Fail("iou_threshold is computed at run time");
    iou_th = ValueOf(in, 3)->at(0);
  }
  if (Has(in, 4)) {
    if (!ValueOf(in, 4)) return Fail("score_threshold is computed at run time");
    score_th = ValueOf(in, 4)->at(0);
  }
  bool center = op.attr_int("center_point_box", 0) != 0;
  if (boxes->shape.size() != 3 || scores->shape.size() != 3)
    return Fail("bad NonMaxSuppression ranks");
  int64_t batches = scores->shape[0], classes = scores->shape[1], spatial = scores->shape[2];
  auto corners = [&](int64_t b, int64_t i) {
    size_t o = static_cast<size_t>((b * spatial + i) * 4);
    double a0 = boxes->at(o), a1 = boxes->at(o + 1), a2 = boxes->at(o + 2), a3 = boxes->at(o + 3);
    if (center) return std::array<double, 4>{a1 - a3 / 2, a0 - a2 / 2, a1 + a3 / 2, a0 + a2 / 2};
    return std::array<double, 4>{std::min(a0, a2), std::min(a1, a3), std::max(a0, a2),
                                 std::max(a1, a3)};
  };
  auto iou = [&](int64_t b, int64_t i, int64_t j) {
    auto p = corners(b, i), q = corners(b, j);
    double ih = std::max(0.0, std::min(p[2], q[2]) - std::max(p[0], q[0]));
    double iw = std::max(0.0, std::min(p[3], q[3]) - std::max(p[1], q[1]));
    double inter = ih * iw;
    double uni = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter;
    return uni > 0 ? inter / uni : 0.0;
  };
  int64_t selected = 0;
  for (int64_t b = 0; b < batches; ++b) {
    for (int64_t c = 0; c < classes; ++c) {
      std::vector<int64_t> cand;
      for (int64_t i = 0; i < spatial; ++i) {
        if (scores->at(static_cast<size_t>((b * classes + c) * spatial + i)) > score_th)
          cand.push_back(i);
      }
      std::stable_sort(cand.begin(), cand.end(), [&](int64_t i, int64_t j) {
        return scores->at(static_cast<size_t>((b * classes + c) * spatial + i)) >
               scores->at(static_cast<size_t>((b * classes + c) * spatial + j));
      });
      std::vector<int64_t> kept;
      for (int64_t i : cand) {
        if (static_cast<int64_t>(kept.size()) >= max_out) break;
        bool ok = true;
        for (int64_t k : kept) ok = ok && iou(b, i, k) <= iou_th;
        if (ok) kept.push_back(i);
      }
      selected += static_cast<int64_t>(kept.size());
    }
  }
  return One(DType::kInt64, {selected, 3});
}

Rule Unique(const Op& op, const std::vector<const Tensor*>& in) {
  const ConstValue* x = ValueOf(in, 0);
  if (!x) return Fail("Unique's result depends on values computed at run time");
  const Attribute* axis_attr = op.attr("axis");
  Shape s = in[0]->shape;
  int64_t rank = static_cast<int64_t>(s.size());
  int64_t axis = axis_attr ? Norm(axis_attr->i, rank) : -1;
  if (axis_attr && (axis < 0 || axis >= rank)) return Fail("Unique axis out of range");
  // Slices along the axis (or single elements without one), compared as value vectors.
  int64_t outer = 1, n = static_cast<int64_t>(x->size()), inner = 1;
  if (axis >= 0) {
    n = s[axis];
    for (int64_t d = 0; d < axis; ++d) outer *= s[d];
    for (int64_t d = axis + 1; d < rank; ++d) inner *= s[d];
  }
  std::set<std::vector<double>> seen;
  for (int64_t k = 0; k < n; ++k) {
    std::vector<double> slice;
    for (int64_t a = 0; a < outer; ++a) {
      for (int64_t b = 0; b < inner; ++b)
        slice.push_back(x->at(static_cast<size_t>((a * n + k) * inner + b)));
    }
    seen.insert(slice);
  }
  int64_t u = static_cast<int64_t>(seen.size());
  Shape y = axis >= 0 ? s : Shape{u};
  if (axis >= 0) y[axis] = u;
  return std::vector<ShapeResult>{Plain(in[0]->dtype, y), Plain(DType::kInt64, {u}),
                                  Plain(DType::kInt64, {n}), Plain(DType::kInt64, {u})};
}

Rule StringNormalizer(const Op& op, const std::vector<const Tensor*>& in) {
  const ConstValue* x = ValueOf(in, 0);
  if (!x) return Fail("StringNormalizer's result depends on values computed at run time");
  const Attribute* stop = op.attr("stopwords");
  bool sensitive = op.attr_int("is_case_sensitive", 0) != 0;
  auto lower = [](std::string v) {
    for (char& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return v;
  };
  std::set<std::string> words;
  if (stop) {
    for (const auto& w : stop->strings) words.insert(sensitive ? w : lower(w));
  }
  int64_t kept = 0;
  for (const auto& v : x->strings) kept += !words.count(sensitive ? v : lower(v));
  if (kept == 0) kept = 1;  // an all-stopword input yields one empty string
  Shape s = in[0]->shape;
  s.back() = kept;
  return One(DType::kString, s);
}

Rule Stft(const Op& op, const std::vector<const Tensor*>& in) {
  const ConstValue* step = ValueOf(in, 1);
  if (!step) return Fail("STFT frame_step is computed at run time");
  int64_t frame_length = 0;
  if (const ConstValue* fl = ValueOf(in, 3)) {
    frame_length = static_cast<int64_t>(fl->at(0));
  } else if (Has(in, 2)) {
    frame_length = in[2]->shape.at(0);
  } else {
    return Fail("STFT frame length is unknown");
  }
  const Shape& sig = in[0]->shape;
  if (sig.size() != 3) return Fail("STFT signal must be rank 3");
  int64_t hop = static_cast<int64_t>(step->at(0));
  if (hop <= 0 || frame_length <= 0 || frame_length > sig[1]) return Fail("bad STFT framing");
  int64_t frames = (sig[1] - frame_length) / hop + 1;
  bool onesided = op.attr_int("onesided", 1) != 0;
  int64_t bins = onesided ? frame_length / 2 + 1 : frame_length;
  return One(in[0]->dtype, {sig[0], frames, bins, 2});
}

Rule MaxUnpool(const Op& op, const std::vector<const Tensor*>& in) {
  const ConstValue* out = ValueOf(in, 2);
  if (!out) return Fail("MaxUnpool output_shape is computed at run time");
  Shape s;
  for (size_t i = 0; i < out->size(); ++i) s.push_back(static_cast<int64_t>(out->at(i)));
  (void)op;
  return One(in[0]->dtype, s);
}

Rule Gradient(const Op& op, const std::vector<const Tensor*>& in) {
  const Attribute* xs = op.attr("xs");
  if (!xs) return Fail("Gradient has no xs");
  std::vector<ShapeResult> out;
  for (const auto& name : xs->strings) {
    const Tensor* found = nullptr;
    for (const Tensor* t : in) {
      if (t && t->name == name) found = t;
    }
    if (!found) return Fail("Gradient of '" + name + "', which is not an input of the node");
    out.push_back(Plain(found->dtype, found->shape));
  }
  return out;
}

// Sequence ops, on element types and shapes; positions must be known values.
std::optional<int64_t> Position(const std::vector<const Tensor*>& in, size_t i, int64_t size,
                                bool insert) {
  const ConstValue* v = ValueOf(in, i);
  if (!v || v->size() != 1) return std::nullopt;
  int64_t p = static_cast<int64_t>(v->at(0));
  if (p < 0) p += size;
  if (p < 0 || p > size || (!insert && p == size)) return std::nullopt;
  return p;
}

Rule Sequence(const Op& op, const std::vector<const Tensor*>& in) {
  const std::string& t = op.type;
  auto seq = [](DType dtype, std::vector<TypeShape> elements) {
    ShapeResult r;
    r.dtype = dtype;
    r.is_sequence = true;
    r.elements = std::move(elements);
    return Rule(std::vector<ShapeResult>{r});
  };
  if (t == "SequenceConstruct") {
    std::vector<TypeShape> e;
    for (const Tensor* x : in) e.push_back({x->dtype, x->shape});
    return seq(in[0]->dtype, e);
  }
  if (!in[0]->is_sequence) {
    if (t == "SplitToSequence") {
      const Shape& s = in[0]->shape;
      int64_t rank = static_cast<int64_t>(s.size());
      int64_t axis = Norm(op.attr_int("axis", 0), rank);
      if (axis < 0 || axis >= rank) return Fail("SplitToSequence axis out of range");
      std::vector<TypeShape> e;
      if (!Has(in, 1)) {
        Shape piece = s;
        if (op.attr_int("keepdims", 1)) {
          piece[axis] = 1;
        } else {
          piece.erase(piece.begin() + axis);
        }
        e.assign(static_cast<size_t>(s[axis]), TypeShape{in[0]->dtype, piece});
        return seq(in[0]->dtype, e);
      }
      const ConstValue* split = ValueOf(in, 1);
      if (!split) return Fail("SplitToSequence split is computed at run time");
      std::vector<int64_t> sizes;
      if (split->shape.empty()) {
        int64_t chunk = static_cast<int64_t>(split->at(0));
        if (chunk <= 0) return Fail("SplitToSequence chunk must be positive");
        for (int64_t left = s[axis]; left > 0; left -= chunk)
          sizes.push_back(std::min(chunk, left));
      } else {
        for (size_t i = 0; i < split->size(); ++i)
          sizes.push_back(static_cast<int64_t>(split->at(i)));
      }
      for (int64_t n : sizes) {
        Shape piece = s;
        piece[axis] = n;
        e.push_back({in[0]->dtype, piece});
      }
      return seq(in[0]->dtype, e);
    }
    return Fail(t + " expects a sequence");
  }
  std::vector<TypeShape> e = in[0]->elements;
  int64_t n = static_cast<int64_t>(e.size());
  if (t == "Identity") return seq(in[0]->dtype, e);
  if (t == "SequenceLength") return One(DType::kInt64, {});
  if (t == "SequenceInsert") {
    auto p = Has(in, 2) ? Position(in, 2, n, true) : std::optional<int64_t>(n);
    if (!p) return Fail("SequenceInsert position is unknown or out of range");
    e.insert(e.begin() + *p, TypeShape{in[1]->dtype, in[1]->shape});
    return seq(in[0]->dtype, e);
  }
  if (t == "SequenceErase") {
    auto p = Has(in, 1) ? Position(in, 1, n, false) : std::optional<int64_t>(n - 1);
    if (!p || *p < 0) return Fail("SequenceErase position is unknown or out of range");
    e.erase(e.begin() + *p);
    return seq(in[0]->dtype, e);
  }
  if (t == "SequenceAt") {
    auto p = Position(in, 1, n, false);
    if (!p) return Fail("SequenceAt position is unknown or out of range");
    return One(e[*p].dtype, e[*p].shape);
  }
  if (t == "ConcatFromSequence") {
    if (e.empty()) return Fail("ConcatFromSequence of an empty sequence");
    bool new_axis = op.attr_int("new_axis", 0) != 0;
    Shape s = e[0].shape;
    int64_t rank = static_cast<int64_t>(s.size()) + (new_axis ? 1 : 0);
    int64_t axis = Norm(op.attr_int("axis", 0), rank);
    if (axis < 0 || axis >= rank) return Fail("ConcatFromSequence axis out of range");
    if (new_axis) {
      s.insert(s.begin() + axis, n);
    } else {
      s[axis] = 0;
      for (const auto& x : e) s[axis] += x.shape.at(axis);
    }
    return One(e[0].dtype, s);
  }
  return Fail(t + " on sequences is not supported");
}

bool IsSequenceOp(const std::string& t) {
  return t == "SequenceConstruct" || t == "SequenceInsert" || t == "SequenceErase" ||
         t == "SequenceAt" || t == "SequenceLength" || t == "ConcatFromSequence" ||
         t == "SplitToSequence";
}

}  // namespace

bool OwnRuleWithoutSchema(const std::string& type, int64_t opset) {
  return (type == "Gelu" && opset >= 20) || (type == "GroupNormalization" && opset >= 18);
}

std::optional<Result<std::vector<ShapeResult>>> OwnShapeRule(const Op& op, int64_t opset,
                                                             const std::vector<const Tensor*>& in) {
  const std::string& t = op.type;
  if (t == "SequenceEmpty") {
    ShapeResult r;
    auto dt = DTypeFromOnnx(static_cast<int32_t>(op.attr_int("dtype", 1)));
    r.dtype = dt ? *dt : DType::kFloat32;
    r.is_sequence = true;
    return Rule(std::vector<ShapeResult>{r});
  }
  if (in.empty() || !in[0]) return std::nullopt;
  if (IsSequenceOp(t) || in[0]->is_sequence) return Sequence(op, in);
  if (op.domain == "ai.onnx.preview.training") {
    if (t == "Gradient") return Gradient(op, in);
    return std::nullopt;
  }
  if (!op.domain.empty() && op.domain != "ai.onnx") return std::nullopt;
  if (OwnRuleWithoutSchema(t, opset)) return One(in[0]->dtype, in[0]->shape);
  if (opset >= 18 && t.rfind("Reduce", 0) == 0 && t != "ReduceSum") return Reduce(op, in);
  if (t == "Einsum") return Einsum(op, in);
  if (t == "OneHot") return OneHot(op, in);
  if (t == "Compress") return Compress(op, in);
  if (t == "NonZero") return NonZero(in);
  if (t == "NonMaxSuppression") return NonMaxSuppression(op, in);
  if (t == "Unique") return Unique(op, in);
  if (t == "StringNormalizer") return StringNormalizer(op, in);
  if (t == "STFT") return Stft(op, in);
  if (t == "MaxUnpool" && Has(in, 2)) return MaxUnpool(op, in);
  return std::nullopt;
}

}  // namespace vramsim
