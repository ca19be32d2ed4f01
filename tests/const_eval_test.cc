// The shape-arithmetic evaluator on small hand-made inputs; every expected value is worked out
// by hand. Also ValueFromTensorProto from raw_data and from the typed fields.
#include "importer/const_eval.h"

#include <gtest/gtest.h>

#include <climits>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "tests/model_builder.h"

using namespace vramsim;
using vramsim::testing::Int64Tensor;
using vramsim::testing::RawTensor;
using vramsim::testing::TensorOf;

namespace {

using Shape = std::vector<int64_t>;
using Ints = std::vector<int64_t>;
using Floats = std::vector<double>;

constexpr int64_t kMax = INT64_MAX;
constexpr int64_t kMin = INT64_MIN;

Tensor IntT(const Shape& shape, const Ints& values, DType dtype = DType::kInt64) {
  Tensor t;
  t.dtype = dtype;
  t.shape = shape;
  ConstValue v;
  v.dtype = dtype;
  v.shape = shape;
  v.ints = values;
  t.value = v;
  return t;
}

Tensor FloatT(const Shape& shape, const Floats& values, DType dtype = DType::kFloat32) {
  Tensor t;
  t.dtype = dtype;
  t.shape = shape;
  ConstValue v;
  v.dtype = dtype;
  v.shape = shape;
  v.floats = values;
  t.value = v;
  return t;
}

// A tensor whose shape is known but not its values.
Tensor ShapeOnly(const Shape& shape, DType dtype = DType::kFloat32) {
  Tensor t;
  t.dtype = dtype;
  t.shape = shape;
  return t;
}

Attribute IntAttr(int64_t v) {
  Attribute a;
  a.kind = Attribute::Kind::kInt;
  a.i = v;
  return a;
}
Attribute IntsAttr(const Ints& v) {
  Attribute a;
  a.kind = Attribute::Kind::kInts;
  a.ints = v;
  return a;
}

Op MakeOp(const std::string& type, std::map<std::string, Attribute> attrs = {}) {
  Op op;
  op.type = type;
  op.attrs = std::move(attrs);
  return op;
}

using Out = std::optional<std::vector<ConstValue>>;

Out Eval(const Op& op, int64_t opset, const std::vector<const Tensor*>& in) {
  return EvaluateOp(op, opset, in);
}

// The single result, which must exist.
ConstValue Single(const Out& out) {
  EXPECT_TRUE(out.has_value());
  if (!out || out->empty()) return {};
  EXPECT_EQ(out->size(), 1u);
  return out->front();
}

// ---------------------------------------------------------------------------------------------
// Shape, Gather

TEST(ConstEval, ShapeNeedsOnlyTheShape) {
  Tensor x = ShapeOnly({2, 5, 64});
  ConstValue v = Single(Eval(MakeOp("Shape"), 13, {&x}));
  EXPECT_EQ(v.dtype, DType::kInt64);
  EXPECT_EQ(v.shape, Shape{3});
  EXPECT_EQ(v.ints, (Ints{2, 5, 64}));
  // Opset 15 start/end: dims 1..2 -> [5, 64]; start -1 -> [64].
  v = Single(Eval(MakeOp("Shape", {{"start", IntAttr(1)}}), 15, {&x}));
  EXPECT_EQ(v.ints, (Ints{5, 64}));
  v = Single(Eval(MakeOp("Shape", {{"start", IntAttr(-1)}}), 15, {&x}));
  EXPECT_EQ(v.ints, (Ints{64}));
}

TEST(ConstEval, GatherNegativeIndex) {
  Tensor shape = IntT({4}, {2, 5, 7, 9});
  Tensor minus2 = IntT({}, {-2});
  ConstValue v = Single(Eval(MakeOp("Gather"), 13, {&shape, &minus2}));
  EXPECT_EQ(v.shape, Shape{});  // scalar index -> scalar
  EXPECT_EQ(v.ints, Ints{7});

  // data [3,2] = {{10,11},{20,21},{30,31}}, indices {-1} along axis 0 -> [1,2] {30,31}.
  Tensor data = IntT({3, 2}, {10, 11, 20, 21, 30, 31});
  Tensor last = IntT({1}, {-1});
  v = Single(Eval(MakeOp("Gather"), 13, {&data, &last}));
  EXPECT_EQ(v.shape, (Shape{1, 2}));
  EXPECT_EQ(v.ints, (Ints{30, 31}));

  // Along axis 1 with {-1, 0}: columns swapped -> [3,2] {11,10,21,20,31,30}.
  Tensor swap = IntT({2}, {-1, 0});
  v = Single(Eval(MakeOp("Gather", {{"axis", IntAttr(1)}}), 13, {&data, &swap}));
  EXPECT_EQ(v.shape, (Shape{3, 2}));
  EXPECT_EQ(v.ints, (Ints{11, 10, 21, 20, 31, 30}));

  // Out of range either way: not evaluated.
  Tensor three = IntT({}, {3});
  Tensor minus4 = IntT({}, {-4});
  EXPECT_FALSE(Eval(MakeOp("Gather"), 13, {&data, &three}).has_value());
  EXPECT_FALSE(Eval(MakeOp("Gather"), 13, {&data, &minus4}).has_value());
}

TEST(ConstEval, GatherNeedsValues) {
  Tensor data = ShapeOnly({4}, DType::kInt64);
  Tensor idx = IntT({}, {0});
  EXPECT_FALSE(Eval(MakeOp("Gather"), 13, {&data, &idx}).has_value());
}

// ---------------------------------------------------------------------------------------------
// Slice

TEST(ConstEval, SliceClampsInt64MaxEnds) {
  // [2,5] = {{0..4},{5..9}}; columns 1..INT64_MAX -> 1..4.
  Tensor data = IntT({2, 5}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  Tensor starts = IntT({1}, {1}), ends = IntT({1}, {kMax}), axes = IntT({1}, {1});
  ConstValue v = Single(Eval(MakeOp("Slice"), 13, {&data, &starts, &ends, &axes}));
  EXPECT_EQ(v.shape, (Shape{2, 4}));
  EXPECT_EQ(v.ints, (Ints{1, 2, 3, 4, 6, 7, 8, 9}));
  // Negative starts/ends on the last axis: -3..-1 -> columns 2, 3.
  Tensor s2 = IntT({1}, {-3}), e2 = IntT({1}, {-1}), a2 = IntT({1}, {-1});
  v = Single(Eval(MakeOp("Slice"), 13, {&data, &s2, &e2, &a2}));
  EXPECT_EQ(v.shape, (Shape{2, 2}));
  EXPECT_EQ(v.ints, (Ints{2, 3, 7, 8}));
  // Starting past the end: empty.
  Tensor s3 = IntT({1}, {kMax});
  v = Single(Eval(MakeOp("Slice"), 13, {&data, &s3, &ends, &axes}));
  EXPECT_EQ(v.shape, (Shape{2, 0}));
  EXPECT_TRUE(v.ints.empty());
}

TEST(ConstEval, SliceNegativeSteps) {
  Tensor data = IntT({5}, {0, 1, 2, 3, 4});
  Tensor axes = IntT({1}, {0});
  // x[::-1]: start -1 -> 4, end INT64_MIN -> before 0: {4,3,2,1,0}.
  Tensor s = IntT({1}, {-1}), e = IntT({1}, {kMin}), step = IntT({1}, {-1});
  ConstValue v = Single(Eval(MakeOp("Slice"), 13, {&data, &s, &e, &axes, &step}));
  EXPECT_EQ(v.shape, Shape{5});
  EXPECT_EQ(v.ints, (Ints{4, 3, 2, 1, 0}));
  // x[INT64_MAX:INT64_MIN:-2]: start clamps to 4: {4,2,0}.
  Tensor s2 = IntT({1}, {kMax}), step2 = IntT({1}, {-2});
  v = Single(Eval(MakeOp("Slice"), 13, {&data, &s2, &e, &axes, &step2}));
  EXPECT_EQ(v.shape, Shape{3});
  EXPECT_EQ(v.ints, (Ints{4, 2, 0}));
  // x[3:0:-1] = {3,2,1} (end exclusive).
  Tensor s3 = IntT({1}, {3}), e3 = IntT({1}, {0});
  v = Single(Eval(MakeOp("Slice"), 13, {&data, &s3, &e3, &axes, &step}));
  EXPECT_EQ(v.ints, (Ints{3, 2, 1}));
  // Step 0 is invalid.
  Tensor zero = IntT({1}, {0});
  EXPECT_FALSE(Eval(MakeOp("Slice"), 13, {&data, &s, &e, &axes, &zero}).has_value());
}

TEST(ConstEval, SliceAttributeFormBeforeOpset10) {
  Tensor data = FloatT({4}, {0.5, 1.5, 2.5, 3.5});
  Op op = MakeOp("Slice", {{"starts", IntsAttr({1})}, {"ends", IntsAttr({kMax})}});
  ConstValue v = Single(Eval(op, 9, {&data}));
  EXPECT_EQ(v.dtype, DType::kFloat32);
  EXPECT_EQ(v.shape, Shape{3});
  EXPECT_EQ(v.floats, (Floats{1.5, 2.5, 3.5}));
}

// Steps at the ends of int64: one element each, and no signed overflow on the way.
TEST(ConstEval, SliceExtremeSteps) {
  Tensor data = IntT({5}, {0, 1, 2, 3, 4});
  Tensor axes = IntT({1}, {0});
  Tensor s = IntT({1}, {0}), e = IntT({1}, {kMax}), big = IntT({1}, {kMax});
  ConstValue v = Single(Eval(MakeOp("Slice"), 13, {&data, &s, &e, &axes, &big}));
  EXPECT_EQ(v.shape, Shape{1});
  EXPECT_EQ(v.ints, Ints{0});
  Tensor s2 = IntT({1}, {-1}), e2 = IntT({1}, {kMin}), small = IntT({1}, {kMin});
  v = Single(Eval(MakeOp("Slice"), 13, {&data, &s2, &e2, &axes, &small}));
  EXPECT_EQ(v.shape, Shape{1});
  EXPECT_EQ(v.ints, Ints{4});
}

// ---------------------------------------------------------------------------------------------
// Concat, Reshape, Unsqueeze/Squeeze

TEST(ConstEval, Concat) {
  Tensor a = IntT({2}, {1, 2}), b = IntT({1}, {3}), c = IntT({0}, {});
  ConstValue v = Single(Eval(MakeOp("Concat", {{"axis", IntAttr(0)}}), 13, {&a, &c, &b}));
  EXPECT_EQ(v.shape, Shape{3});
  EXPECT_EQ(v.ints, (Ints{1, 2, 3}));
  // [2,1] {1,2} ++ [2,2] {3,4,5,6} along axis 1 (and -1) -> [2,3] {1,3,4, 2,5,6}.
  Tensor p = IntT({2, 1}, {1, 2}), q = IntT({2, 2}, {3, 4, 5, 6});
  for (int64_t axis : {1, -1}) {
    v = Single(Eval(MakeOp("Concat", {{"axis", IntAttr(axis)}}), 13, {&p, &q}));
    EXPECT_EQ(v.shape, (Shape{2, 3}));
    EXPECT_EQ(v.ints, (Ints{1, 3, 4, 2, 5, 6}));
  }
  // Along axis 0: [1,2] {7,8} ++ [2,2] {3,4,5,6} -> [3,2].
  Tensor r = IntT({1, 2}, {7, 8});
  v = Single(Eval(MakeOp("Concat", {{"axis", IntAttr(0)}}), 13, {&r, &q}));
  EXPECT_EQ(v.shape, (Shape{3, 2}));
  EXPECT_EQ(v.ints, (Ints{7, 8, 3, 4, 5, 6}));
  // Rank mismatch: not evaluated.
  EXPECT_FALSE(Eval(MakeOp("Concat", {{"axis", IntAttr(0)}}), 13, {&a, &p}).has_value());
}

TEST(ConstEval, ReshapeZeroAndMinusOne) {
  Floats values(24);
  for (int i = 0; i < 24; ++i) values[i] = i;
  Tensor data = FloatT({2, 3, 4}, values);
  auto reshape = [&](const Ints& target, int64_t allowzero = 0) {
    Tensor t = IntT({static_cast<int64_t>(target.size())}, target);
    return Eval(MakeOp("Reshape", {{"allowzero", IntAttr(allowzero)}}), 14, {&data, &t});
  };
  // [0,-1]: 0 copies 2; -1 = 24/2 = 12.
  ConstValue v = Single(reshape({0, -1}));
  EXPECT_EQ(v.shape, (Shape{2, 12}));
  EXPECT_EQ(v.floats, values);  // values in the same order
  EXPECT_EQ(Single(reshape({-1})).shape, Shape{24});
  // [4,-1,3]: -1 = 24/12 = 2.
  EXPECT_EQ(Single(reshape({4, -1, 3})).shape, (Shape{4, 2, 3}));
  // [0,0,-1] -> [2,3,4].
  EXPECT_EQ(Single(reshape({0, 0, -1})).shape, (Shape{2, 3, 4}));
  EXPECT_FALSE(reshape({-1, -1}).has_value());      // two -1s
  EXPECT_FALSE(reshape({5, -1}).has_value());       // 24 not divisible by 5
  EXPECT_FALSE(reshape({2, 3, 5}).has_value());     // 30 != 24
  EXPECT_FALSE(reshape({0, 0, 0, 0}).has_value());  // 0 past the input's rank
  EXPECT_FALSE(reshape({0, -1}, 1).has_value());    // allowzero: 0 stays 0, -1 undetermined
  // Opset 1-4: target as attribute.
  v = Single(Eval(MakeOp("Reshape", {{"shape", IntsAttr({6, 4})}}), 4, {&data}));
  EXPECT_EQ(v.shape, (Shape{6, 4}));
}

TEST(ConstEval, UnsqueezeSqueezeAttributeFormOpset11) {
  Tensor x = IntT({3}, {4, 5, 6});
  // axes {0,-1} in the output's rank 3 -> 0 and 2 -> [1,3,1].
  ConstValue v = Single(Eval(MakeOp("Unsqueeze", {{"axes", IntsAttr({0, -1})}}), 11, {&x}));
  EXPECT_EQ(v.shape, (Shape{1, 3, 1}));
  EXPECT_EQ(v.ints, (Ints{4, 5, 6}));
  Tensor y = IntT({1, 3, 1}, {4, 5, 6});
  v = Single(Eval(MakeOp("Squeeze", {{"axes", IntsAttr({0})}}), 11, {&y}));
  EXPECT_EQ(v.shape, (Shape{3, 1}));
  v = Single(Eval(MakeOp("Squeeze"), 11, {&y}));  // no axes: every 1 goes
  EXPECT_EQ(v.shape, Shape{3});
  EXPECT_EQ(v.ints, (Ints{4, 5, 6}));
  // Squeezing a dim that is not 1.
  EXPECT_FALSE(Eval(MakeOp("Squeeze", {{"axes", IntsAttr({1})}}), 11, {&y}).has_value());
}

TEST(ConstEval, UnsqueezeSqueezeInputFormOpset13) {
  Tensor scalar = IntT({}, {7});
  Tensor axes0 = IntT({1}, {0});
  ConstValue v = Single(Eval(MakeOp("Unsqueeze"), 13, {&scalar, &axes0}));
  EXPECT_EQ(v.shape, Shape{1});
  EXPECT_EQ(v.ints, Ints{7});
  Tensor x = IntT({3}, {4, 5, 6});
  Tensor axes1 = IntT({1}, {1});
  EXPECT_EQ(Single(Eval(MakeOp("Unsqueeze"), 13, {&x, &axes1})).shape, (Shape{3, 1}));
  Tensor y = IntT({1, 3, 1}, {4, 5, 6});
  Tensor last = IntT({1}, {-1});
  EXPECT_EQ(Single(Eval(MakeOp("Squeeze"), 13, {&y, &last})).shape, (Shape{1, 3}));
  EXPECT_EQ(Single(Eval(MakeOp("Squeeze"), 13, {&y})).shape, Shape{3});
  // At opset 13 an `axes` attribute is not the axes: the input is (absent here).
  Op attr_form = MakeOp("Squeeze", {{"axes", IntsAttr({0})}});
  EXPECT_EQ(Single(Eval(attr_form, 13, {&y})).shape, Shape{3});
}

// ---------------------------------------------------------------------------------------------
// Range, Where, Cast, Expand, ReduceProd

TEST(ConstEval, Range) {
  Tensor start = IntT({}, {2}), limit = IntT({}, {11}), delta = IntT({}, {3});
  // ceil((11-2)/3) = 3: {2,5,8}.
  ConstValue v = Single(Eval(MakeOp("Range"), 11, {&start, &limit, &delta}));
  EXPECT_EQ(v.dtype, DType::kInt64);
  EXPECT_EQ(v.shape, Shape{3});
  EXPECT_EQ(v.ints, (Ints{2, 5, 8}));
  // Downwards: 10, 4, -2 -> ceil(-6/-2) = 3: {10,8,6}.
  Tensor s2 = IntT({}, {10}), l2 = IntT({}, {4}), d2 = IntT({}, {-2});
  v = Single(Eval(MakeOp("Range"), 11, {&s2, &l2, &d2}));
  EXPECT_EQ(v.ints, (Ints{10, 8, 6}));
  // Empty: start == limit.
  Tensor l3 = IntT({}, {2});
  v = Single(Eval(MakeOp("Range"), 11, {&start, &l3, &delta}));
  EXPECT_EQ(v.shape, Shape{0});
  // Floats: 0, 1, 0.25 -> {0, 0.25, 0.5, 0.75}.
  Tensor fs = FloatT({}, {0}), fl = FloatT({}, {1}), fd = FloatT({}, {0.25});
  v = Single(Eval(MakeOp("Range"), 11, {&fs, &fl, &fd}));
  EXPECT_EQ(v.dtype, DType::kFloat32);
  EXPECT_EQ(v.floats, (Floats{0, 0.25, 0.5, 0.75}));
  // Delta 0 never ends.
  Tensor zero = IntT({}, {0});
  EXPECT_FALSE(Eval(MakeOp("Range"), 11, {&start, &limit, &zero}).has_value());
}

// Malformed Range operands: not evaluated, and no read past the operands' values.
TEST(ConstEval, RangeWithEmptyStartIsNotEvaluated) {
  Tensor empty = IntT({0}, {}), limit = IntT({}, {5}), delta = IntT({}, {1});
  EXPECT_FALSE(Eval(MakeOp("Range"), 11, {&empty, &limit, &delta}).has_value());
  Tensor start = IntT({}, {0}), no_limit = IntT({0}, {});
  EXPECT_FALSE(Eval(MakeOp("Range"), 11, {&start, &no_limit, &delta}).has_value());
}

// ONNX requires one type for all three; a float delta with int64 bounds is a malformed model.
TEST(ConstEval, RangeWithMixedOperandTypes) {
  Tensor start = IntT({}, {0}), limit = IntT({}, {5}), fdelta = FloatT({}, {1.0});
  auto r = Eval(MakeOp("Range"), 11, {&start, &limit, &fdelta});
  if (r) {
    // If evaluated at all, 0..5 step 1.
    EXPECT_EQ(Single(r).ints, (Ints{0, 1, 2, 3, 4}));
  }
}

TEST(ConstEval, WhereBroadcasts) {
  // cond [2,1] {1,0}; x [3] {1,2,3}; y scalar -7 -> [2,3] {1,2,3, -7,-7,-7}.
  Tensor cond = IntT({2, 1}, {1, 0}, DType::kBool);
  Tensor x = IntT({3}, {1, 2, 3}), y = IntT({}, {-7});
  ConstValue v = Single(Eval(MakeOp("Where"), 16, {&cond, &x, &y}));
  EXPECT_EQ(v.dtype, DType::kInt64);
  EXPECT_EQ(v.shape, (Shape{2, 3}));
  EXPECT_EQ(v.ints, (Ints{1, 2, 3, -7, -7, -7}));
  // cond [3] {0,1,0} against x [2,1] {10,20}, y [1,3] {-1,-2,-3} -> [2,3]:
  // row 0: {-1,10,-3}; row 1: {-1,20,-3}.
  Tensor c2 = IntT({3}, {0, 1, 0}, DType::kBool);
  Tensor x2 = FloatT({2, 1}, {10, 20}), y2 = FloatT({1, 3}, {-1, -2, -3});
  v = Single(Eval(MakeOp("Where"), 16, {&c2, &x2, &y2}));
  EXPECT_EQ(v.dtype, DType::kFloat32);
  EXPECT_EQ(v.shape, (Shape{2, 3}));
  EXPECT_EQ(v.floats, (Floats{-1, 10, -3, -1, 20, -3}));
  // Shapes that do not broadcast.
  Tensor bad = IntT({2}, {1, 2});
  EXPECT_FALSE(Eval(MakeOp("Where"), 16, {&cond, &x, &bad}).has_value());
}

TEST(ConstEval, Cast) {
  Tensor x = IntT({3}, {0, 3, -2});
  auto cast = [&](const Tensor& in, DType to) {
    return Single(Eval(MakeOp("Cast", {{"to", IntAttr(static_cast<int64_t>(to))}}), 13, {&in}));
  };
  ConstValue b = cast(x, DType::kBool);
  EXPECT_EQ(b.dtype, DType::kBool);
  EXPECT_EQ(b.ints, (Ints{0, 1, 1}));
  ConstValue f = cast(x, DType::kFloat32);
  EXPECT_EQ(f.dtype, DType::kFloat32);
  EXPECT_EQ(f.floats, (Floats{0, 3, -2}));
  EXPECT_EQ(f.shape, Shape{3});
  // Float to int truncates toward zero: 1.9 -> 1, -1.9 -> -1.
  Tensor y = FloatT({2}, {1.9, -1.9});
  ConstValue i = cast(y, DType::kInt64);
  EXPECT_EQ(i.dtype, DType::kInt64);
  EXPECT_EQ(i.ints, (Ints{1, -1}));
  EXPECT_EQ(cast(y, DType::kInt32).ints, (Ints{1, -1}));
  // Large int64 survives int64 -> int64 exactly.
  Tensor big = IntT({1}, {kMax});
  EXPECT_EQ(cast(big, DType::kInt64).ints, Ints{kMax});
  // To string: not evaluated.
  EXPECT_FALSE(Eval(MakeOp("Cast", {{"to", IntAttr(8)}}), 13, {&x}).has_value());
}

TEST(ConstEval, Expand) {
  // [3,1] {1,2,3} to [2,1,2] -> broadcast shape [2,3,2]: each row value twice, twice over.
  Tensor x = IntT({3, 1}, {1, 2, 3});
  Tensor shape = IntT({3}, {2, 1, 2});
  ConstValue v = Single(Eval(MakeOp("Expand"), 13, {&x, &shape}));
  EXPECT_EQ(v.shape, (Shape{2, 3, 2}));
  EXPECT_EQ(v.ints, (Ints{1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3}));
  // A target of lower rank with 1s keeps the input's shape.
  Tensor one = IntT({1}, {1});
  v = Single(Eval(MakeOp("Expand"), 13, {&x, &one}));
  EXPECT_EQ(v.shape, (Shape{3, 1}));
  EXPECT_EQ(v.ints, (Ints{1, 2, 3}));
  // Incompatible: 3 vs 2.
  Tensor bad = IntT({2}, {2, 2});
  EXPECT_FALSE(Eval(MakeOp("Expand"), 13, {&x, &bad}).has_value());
}

TEST(ConstEval, ReduceProd) {
  // {{1,2,3},{4,5,6}}.
  Tensor x = IntT({2, 3}, {1, 2, 3, 4, 5, 6});
  // Opset 13: axes attribute. Along 1: {6, 120}.
  ConstValue v = Single(
      Eval(MakeOp("ReduceProd", {{"axes", IntsAttr({1})}, {"keepdims", IntAttr(0)}}), 13, {&x}));
  EXPECT_EQ(v.dtype, DType::kInt64);
  EXPECT_EQ(v.shape, Shape{2});
  EXPECT_EQ(v.ints, (Ints{6, 120}));
  v = Single(Eval(MakeOp("ReduceProd", {{"axes", IntsAttr({1})}}), 13, {&x}));
  EXPECT_EQ(v.shape, (Shape{2, 1}));
  // No axes: everything, 720, keepdims -> [1,1].
  v = Single(Eval(MakeOp("ReduceProd"), 13, {&x}));
  EXPECT_EQ(v.shape, (Shape{1, 1}));
  EXPECT_EQ(v.ints, Ints{720});
  // Opset 18: axes as an input. Along 0: {4, 10, 18}.
  Tensor axes0 = IntT({1}, {0});
  v = Single(Eval(MakeOp("ReduceProd"), 18, {&x, &axes0}));
  EXPECT_EQ(v.shape, (Shape{1, 3}));
  EXPECT_EQ(v.ints, (Ints{4, 10, 18}));
  // The common export use: number of elements from Shape, 2*5*64 = 640, keepdims 0 -> scalar.
  Tensor s = IntT({3}, {2, 5, 64});
  v = Single(Eval(MakeOp("ReduceProd", {{"keepdims", IntAttr(0)}}), 13, {&s}));
  EXPECT_EQ(v.shape, Shape{});
  EXPECT_EQ(v.ints, Ints{640});
}

// ---------------------------------------------------------------------------------------------
// Integer arithmetic on hostile values: never a crash (INT64_MIN / -1 traps on x86, and signed
// overflow is undefined). ONNX wraps around; either that or not evaluating is acceptable.

TEST(ConstEval, IntegerDivisionOverflowDoesNotTrap) {
  Tensor a = IntT({1}, {kMin}), b = IntT({1}, {-1});
  auto r = Eval(MakeOp("Div"), 13, {&a, &b});
  if (r) {
    EXPECT_EQ(Single(r).ints, Ints{kMin});
  }
}

TEST(ConstEval, IntegerModOverflowDoesNotTrap) {
  Tensor a = IntT({1}, {kMin}), b = IntT({1}, {-1});
  auto r = Eval(MakeOp("Mod"), 13, {&a, &b});
  if (r) {
    EXPECT_EQ(Single(r).ints, Ints{0});
  }
}

// Signed overflow is undefined behaviour in C++ (UBSan aborts on it); ONNX integer arithmetic
// wraps around, as numpy's does.
TEST(ConstEval, IntegerAddOverflowIsDefined) {
  Tensor max = IntT({1}, {kMax}), one = IntT({1}, {1});
  auto add = Eval(MakeOp("Add"), 13, {&max, &one});
  if (add) {
    EXPECT_EQ(Single(add).ints, Ints{kMin});
  }
}

TEST(ConstEval, IntegerMulOverflowIsDefined) {
  Tensor max = IntT({1}, {kMax}), two = IntT({1}, {2});
  auto mul = Eval(MakeOp("Mul"), 13, {&max, &two});
  if (mul) {
    EXPECT_EQ(Single(mul).ints, Ints{-2});
  }
}

TEST(ConstEval, IntegerNegOverflowIsDefined) {
  Tensor min = IntT({1}, {kMin});
  auto neg = Eval(MakeOp("Neg"), 13, {&min});
  if (neg) {
    EXPECT_EQ(Single(neg).ints, Ints{kMin});
  }
}

// ConstantOfShape's fill must be a number; a string tensor is not one.
TEST(ConstEval, ConstantOfShapeWithStringFillIsNotEvaluated) {
  Tensor shape = IntT({1}, {3});
  Attribute fill;
  fill.kind = Attribute::Kind::kTensor;
  ConstValue s;
  s.dtype = DType::kString;
  s.shape = {1};
  s.strings = {"x"};
  fill.tensor = s;
  auto r = Eval(MakeOp("ConstantOfShape", {{"value", fill}}), 13, {&shape});
  if (r) {
    // If evaluated at all, three copies of the string.
    ConstValue v = Single(r);
    EXPECT_EQ(v.dtype, DType::kString);
    EXPECT_EQ(v.strings, (std::vector<std::string>{"x", "x", "x"}));
  }
}

TEST(ConstEval, ConstantOfShapeFill) {
  Tensor shape = IntT({2}, {2, 3});
  ConstValue v = Single(Eval(MakeOp("ConstantOfShape"), 13, {&shape}));
  EXPECT_EQ(v.dtype, DType::kFloat32);  // default: float 0
  EXPECT_EQ(v.shape, (Shape{2, 3}));
  EXPECT_EQ(v.floats, Floats(6, 0.0));
  Attribute fill;
  fill.kind = Attribute::Kind::kTensor;
  ConstValue one;
  one.dtype = DType::kInt64;
  one.shape = {1};
  one.ints = {1};
  fill.tensor = one;
  v = Single(Eval(MakeOp("ConstantOfShape", {{"value", fill}}), 13, {&shape}));
  EXPECT_EQ(v.dtype, DType::kInt64);
  EXPECT_EQ(v.ints, Ints(6, 1));
  Tensor negative = IntT({1}, {-1});
  EXPECT_FALSE(Eval(MakeOp("ConstantOfShape"), 13, {&negative}).has_value());
}

// ---------------------------------------------------------------------------------------------
// ValueFromTensorProto

TEST(ValueFromTensorProto, RawData) {
  auto f = ValueFromTensorProto(
      RawTensor<float>("f", DType::kFloat32, {2}, std::vector<float>{1.5f, -2.0f}));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->dtype, DType::kFloat32);
  EXPECT_EQ(f->shape, Shape{2});
  EXPECT_EQ(f->floats, (Floats{1.5, -2.0}));

  auto i64 = ValueFromTensorProto(
      RawTensor<int64_t>("i", DType::kInt64, {3}, std::vector<int64_t>{1, -1, kMax}));
  ASSERT_TRUE(i64);
  EXPECT_EQ(i64->ints, (Ints{1, -1, kMax}));  // exact, not through a double

  auto i32 = ValueFromTensorProto(
      RawTensor<int32_t>("i", DType::kInt32, {2, 1}, std::vector<int32_t>{-5, 70000}));
  ASSERT_TRUE(i32);
  EXPECT_EQ(i32->shape, (Shape{2, 1}));
  EXPECT_EQ(i32->ints, (Ints{-5, 70000}));

  auto u8 = ValueFromTensorProto(
      RawTensor<uint8_t>("u", DType::kUInt8, {3}, std::vector<uint8_t>{0, 200, 255}));
  ASSERT_TRUE(u8);
  EXPECT_EQ(u8->ints, (Ints{0, 200, 255}));

  auto i8 = ValueFromTensorProto(
      RawTensor<int8_t>("s", DType::kInt8, {2}, std::vector<int8_t>{-128, 127}));
  ASSERT_TRUE(i8);
  EXPECT_EQ(i8->ints, (Ints{-128, 127}));

  auto b =
      ValueFromTensorProto(RawTensor<uint8_t>("b", DType::kBool, {2}, std::vector<uint8_t>{1, 0}));
  ASSERT_TRUE(b);
  EXPECT_EQ(b->dtype, DType::kBool);
  EXPECT_EQ(b->ints, (Ints{1, 0}));

  // Half: 0x3C00 = 1.0, 0xC000 = -2.0, 0x3800 = 0.5.
  auto h = ValueFromTensorProto(RawTensor<uint16_t>("h", DType::kFloat16, {3},
                                                    std::vector<uint16_t>{0x3C00, 0xC000, 0x3800}));
  ASSERT_TRUE(h);
  EXPECT_EQ(h->dtype, DType::kFloat16);
  EXPECT_EQ(h->floats, (Floats{1.0, -2.0, 0.5}));

  // bfloat16: 0x3F80 = 1.0, 0x4040 = 3.0.
  auto bf = ValueFromTensorProto(
      RawTensor<uint16_t>("bf", DType::kBFloat16, {2}, std::vector<uint16_t>{0x3F80, 0x4040}));
  ASSERT_TRUE(bf);
  EXPECT_EQ(bf->floats, (Floats{1.0, 3.0}));

  auto d =
      ValueFromTensorProto(RawTensor<double>("d", DType::kFloat64, {1}, std::vector<double>{0.1}));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->floats, Floats{0.1});

  // Scalar.
  auto s =
      ValueFromTensorProto(RawTensor<int64_t>("s", DType::kInt64, {}, std::vector<int64_t>{42}));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->shape, Shape{});
  EXPECT_EQ(s->ints, Ints{42});

  // raw_data of the wrong length: 3 int64 declared, 2 given.
  EXPECT_FALSE(ValueFromTensorProto(
      RawTensor<int64_t>("w", DType::kInt64, {3}, std::vector<int64_t>{1, 2})));
}

TEST(ValueFromTensorProto, TypedFields) {
  auto i64 = ValueFromTensorProto(Int64Tensor("i", {2, 2}, {1, -2, kMax, kMin}));
  ASSERT_TRUE(i64);
  EXPECT_EQ(i64->dtype, DType::kInt64);
  EXPECT_EQ(i64->shape, (Shape{2, 2}));
  EXPECT_EQ(i64->ints, (Ints{1, -2, kMax, kMin}));

  onnx::TensorProto f = TensorOf("f", DType::kFloat32, {3});
  for (float x : {0.25f, -1.0f, 8.0f}) f.add_float_data(x);
  auto fv = ValueFromTensorProto(f);
  ASSERT_TRUE(fv);
  EXPECT_EQ(fv->floats, (Floats{0.25, -1.0, 8.0}));

  // int32_data carries int32, int16, int8, uint8 and bool.
  onnx::TensorProto i32 = TensorOf("i32", DType::kInt32, {2});
  i32.add_int32_data(-7);
  i32.add_int32_data(9);
  auto i32v = ValueFromTensorProto(i32);
  ASSERT_TRUE(i32v);
  EXPECT_EQ(i32v->ints, (Ints{-7, 9}));
  onnx::TensorProto bo = TensorOf("b", DType::kBool, {3});
  for (int x : {1, 0, 1}) bo.add_int32_data(x);
  auto bov = ValueFromTensorProto(bo);
  ASSERT_TRUE(bov);
  EXPECT_EQ(bov->ints, (Ints{1, 0, 1}));

  onnx::TensorProto d = TensorOf("d", DType::kFloat64, {2});
  d.add_double_data(1e300);
  d.add_double_data(-0.5);
  auto dv = ValueFromTensorProto(d);
  ASSERT_TRUE(dv);
  EXPECT_EQ(dv->floats, (Floats{1e300, -0.5}));

  onnx::TensorProto u = TensorOf("u", DType::kUInt32, {1});
  u.add_uint64_data(4000000000u);
  auto uv = ValueFromTensorProto(u);
  ASSERT_TRUE(uv);
  EXPECT_EQ(uv->ints, Ints{4000000000});

  // Element count and field size disagree.
  EXPECT_FALSE(ValueFromTensorProto(Int64Tensor("bad", {3}, {1, 2})));
  // No data at all for a non-empty tensor (a payload the reader skipped).
  EXPECT_FALSE(ValueFromTensorProto(TensorOf("skipped", DType::kFloat32, {4, 4})));
  // An empty tensor has an (empty) value.
  auto empty = ValueFromTensorProto(TensorOf("empty", DType::kInt64, {0}));
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->shape, Shape{0});
  EXPECT_TRUE(empty->ints.empty());
}

TEST(ValueFromTensorProto, ExternalOrTooLargeHasNoValue) {
  onnx::TensorProto ext = Int64Tensor("e", {2}, {1, 2});
  ext.set_data_location(onnx::TensorProto::EXTERNAL);
  EXPECT_FALSE(ValueFromTensorProto(ext));
  // 5 elements against a limit of 4.
  auto big = Int64Tensor("big", {5}, {1, 2, 3, 4, 5});
  EXPECT_FALSE(ValueFromTensorProto(big, 4));
  EXPECT_TRUE(ValueFromTensorProto(big, 5));
  // Negative dims.
  EXPECT_FALSE(ValueFromTensorProto(TensorOf("neg", DType::kInt64, {-1})));
}

TEST(ValueFromTensorProto, Strings) {
  onnx::TensorProto s = TensorOf("s", DType::kString, {2});
  s.add_string_data("ab");
  s.add_string_data("cde");
  auto v = ValueFromTensorProto(s);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->dtype, DType::kString);
  EXPECT_EQ(v->strings, (std::vector<std::string>{"ab", "cde"}));
}

}  // namespace
