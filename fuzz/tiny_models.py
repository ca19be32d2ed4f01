"""Small hand-built ONNX models for the seed corpora (fuzz/make_corpus.py): a few nodes each,
symbolic dims batch and seq, the ops whose shape rules and folding matter most. Small seeds run
hundreds of times faster than the bundled exports, so the fuzzer gets deeper into them."""
import onnx
from onnx import TensorProto, helper, numpy_helper  # noqa: F401

F, I64 = TensorProto.FLOAT, TensorProto.INT64


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m.SerializeToString()


def _t(name, dtype, dims, vals):
    return helper.make_tensor(name, dtype, dims, vals)


def models():
    x4 = helper.make_tensor_value_info("x", F, ["batch", 3, 8, 8])
    y = helper.make_tensor_value_info("y", F, None)
    out = []
    # Conv (strides, pads, group, dilations) + BatchNorm + Relu + MaxPool + Flatten + Gemm.
    out.append(_model([
        helper.make_node("Conv", ["x", "w"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1],
                         kernel_shape=[3, 3], group=1, dilations=[1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "gw", "gb"], ["y"], transB=1),
    ], [x4], [y], [
        _t("w", F, [4, 3, 3, 3], [0.1] * 108), _t("s", F, [4], [1] * 4), _t("b", F, [4], [0] * 4),
        _t("m", F, [4], [0] * 4), _t("v", F, [4], [1] * 4), _t("gw", F, [2, 16], [0.1] * 32),
        _t("gb", F, [2], [0] * 2)]))
    # Dynamic reshape: Shape -> Gather -> Unsqueeze -> Concat -> Reshape; Transpose(perm).
    xs = helper.make_tensor_value_info("x", F, ["batch", "seq", 8])
    out.append(_model([
        helper.make_node("Shape", ["x"], ["sh"]),
        helper.make_node("Gather", ["sh", "i0"], ["b0"], axis=0),
        helper.make_node("Gather", ["sh", "i1"], ["s0"], axis=0),
        helper.make_node("Unsqueeze", ["b0", "ax"], ["b1"]),
        helper.make_node("Unsqueeze", ["s0", "ax"], ["s1"]),
        helper.make_node("Concat", ["b1", "s1", "c2", "c4"], ["tgt"], axis=0),
        helper.make_node("Reshape", ["x", "tgt"], ["r"]),
        helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3]),
        helper.make_node("MatMul", ["t", "wt"], ["mm"]),
        helper.make_node("Softmax", ["mm"], ["y"], axis=-1),
    ], [xs], [y], [
        _t("i0", I64, [], [0]), _t("i1", I64, [], [1]), _t("ax", I64, [1], [0]),
        _t("c2", I64, [1], [2]), _t("c4", I64, [1], [4]), _t("wt", F, [4, 4], [0.5] * 16)]))
    # Embedding (Gather on int64 ids), LayerNorm, attention-style MatMul, Where/Equal mask.
    ids = helper.make_tensor_value_info("ids", I64, ["batch", "seq"])
    out.append(_model([
        helper.make_node("Gather", ["emb", "ids"], ["e"]),
        helper.make_node("LayerNormalization", ["e", "g", "bb"], ["ln"], axis=-1, epsilon=1e-5),
        helper.make_node("Transpose", ["ln"], ["lt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["ln", "lt"], ["att"]),
        helper.make_node("Shape", ["att"], ["ash"]),
        helper.make_node("ConstantOfShape", ["ash"], ["z"],
                         value=_t("zv", F, [1], [0.0])),
        helper.make_node("Equal", ["att", "z"], ["eq"]),
        helper.make_node("Where", ["eq", "z", "att"], ["w"]),
        helper.make_node("ReduceMean", ["w"], ["y"], axes=[-1], keepdims=0),
    ], [ids], [y], [
        _t("emb", F, [16, 8], [0.1] * 128), _t("g", F, [8], [1] * 8), _t("bb", F, [8], [0] * 8)]))
    # Slice / Range / Expand / Tile / Split / Squeeze / Pad / Trilu on symbolic dims.
    out.append(_model([
        helper.make_node("Shape", ["x"], ["sh"]),
        helper.make_node("Slice", ["sh", "st", "en"], ["sl"]),
        helper.make_node("Squeeze", ["sl", "ax"], ["n"]),
        helper.make_node("Range", ["z0", "n", "one"], ["rg"]),
        helper.make_node("Cast", ["rg"], ["rf"], to=F),
        helper.make_node("Expand", ["rf", "sh"], ["ex"]),
        helper.make_node("Add", ["x", "ex"], ["a"]),
        helper.make_node("Split", ["a", "sp"], ["p0", "p1"], axis=2),
        helper.make_node("Concat", ["p1", "p0"], ["cc"], axis=2),
        helper.make_node("Pad", ["cc", "pads"], ["pd"], mode="constant"),
        helper.make_node("Tile", ["pd", "reps"], ["ti"]),
        helper.make_node("Trilu", ["ti"], ["y"], upper=0),
    ], [xs], [y], [
        _t("st", I64, [1], [2]), _t("en", I64, [1], [3]), _t("ax", I64, [1], [0]),
        _t("z0", I64, [], [0]), _t("one", I64, [], [1]), _t("sp", I64, [2], [3, 5]),
        _t("pads", I64, [6], [0, 1, 0, 0, 1, 0]), _t("reps", I64, [3], [1, 2, 1])]))
    # Pooling, ConvTranspose, Resize-free upsampling, Einsum, Dropout.
    out.append(_model([
        helper.make_node("AveragePool", ["x"], ["ap"], kernel_shape=[3, 3], strides=[1, 1],
                         pads=[1, 1, 1, 1], count_include_pad=0),
        helper.make_node("ConvTranspose", ["ap", "w"], ["ct"], strides=[2, 2],
                         kernel_shape=[2, 2], output_padding=[0, 0]),
        helper.make_node("GlobalAveragePool", ["ct"], ["gp"]),
        helper.make_node("Einsum", ["gp", "gp"], ["es"], equation="bchw,dchw->bd"),
        helper.make_node("Dropout", ["es"], ["y"]),
    ], [x4], [y], [_t("w", F, [3, 2, 2, 2], [0.1] * 24)]))
    return out
