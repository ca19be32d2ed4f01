#!/usr/bin/env python3
"""Which aten ops torch.autocast("cpu", torch.bfloat16) runs in bf16, in fp32, or in their
inputs' type, on this torch (the CPU 1.13 column of policies/precision.cc's lists).

Each op runs once on an fp32 and once on a bf16 input under autocast: bf16 out of an fp32
input means "lower precision"; fp32 out of a bf16 input means "fp32"; otherwise it follows
its inputs. The mixed rows show type promotion (cat/stack/where/add of fp32 and bf16).

  /usr/bin/python3 validation/autocast_probe.py
"""
import torch
import torch.nn.functional as F

torch.manual_seed(0)
x4 = lambda dt: torch.randn(2, 4, 8, 8, dtype=dt)
x5 = lambda dt: torch.randn(2, 4, 4, 4, 4, dtype=dt)
x2 = lambda dt: torch.randn(8, 8, dtype=dt)
w = torch.randn(4, 4, 3, 3)
ops = {
 "Conv": lambda dt: F.conv2d(x4(dt), w.to(dt)),
 "ConvTranspose": lambda dt: F.conv_transpose2d(x4(dt), w.to(dt)),
 "MatMul": lambda dt: x2(dt) @ x2(dt),
 "Gemm(linear)": lambda dt: F.linear(x2(dt), x2(dt), torch.randn(8, dtype=dt)),
 "PRelu": lambda dt: F.prelu(x4(dt), torch.randn(1, dtype=dt)),
 "Einsum": lambda dt: torch.einsum("ij,jk->ik", x2(dt), x2(dt)),
 "BatchNormalization": lambda dt: F.batch_norm(x4(dt), torch.zeros(4), torch.ones(4), torch.ones(4, dtype=dt), torch.zeros(4, dtype=dt), training=True),
 "LayerNormalization": lambda dt: F.layer_norm(x2(dt), (8,), torch.ones(8, dtype=dt), torch.zeros(8, dtype=dt)),
 "GroupNormalization": lambda dt: F.group_norm(x4(dt), 2, torch.ones(4, dtype=dt), torch.zeros(4, dtype=dt)),
 "InstanceNormalization": lambda dt: F.instance_norm(x4(dt)),
 "Softmax": lambda dt: F.softmax(x2(dt), -1),
 "LogSoftmax": lambda dt: F.log_softmax(x2(dt), -1),
 "Resize(nearest)": lambda dt: F.interpolate(x4(dt), scale_factor=2, mode="nearest"),
 "Resize(bilinear)": lambda dt: F.interpolate(x4(dt), scale_factor=2, mode="bilinear"),
 "AveragePool2d": lambda dt: F.avg_pool2d(x4(dt), 2),
 "AveragePool3d": lambda dt: F.avg_pool3d(x5(dt), 2),
 "MaxPool2d": lambda dt: F.max_pool2d(x4(dt), 2),
 "MaxPool3d": lambda dt: F.max_pool3d(x5(dt), 2),
 "GlobalAveragePool(adaptive2d)": lambda dt: F.adaptive_avg_pool2d(x4(dt), 1),
 "adaptive_avg_pool3d": lambda dt: F.adaptive_avg_pool3d(x5(dt), 1),
 "Pad(reflect)": lambda dt: F.pad(x4(dt), (1, 1, 1, 1), mode="reflect"),
 "Pad(edge)": lambda dt: F.pad(x4(dt), (1, 1, 1, 1), mode="replicate"),
 "Pad(constant)": lambda dt: F.pad(x4(dt), (1, 1, 1, 1)),
 "ReduceSum": lambda dt: x2(dt).sum(-1),
 "ReduceMean": lambda dt: x2(dt).mean(-1),
 "ReduceProd": lambda dt: x2(dt).prod(-1),
 "CumSum": lambda dt: x2(dt).cumsum(-1),
 "Exp": lambda dt: x2(dt).exp(),
 "Log": lambda dt: x2(dt).abs().log(),
 "Pow": lambda dt: x2(dt).pow(2),
 "Sqrt": lambda dt: x2(dt).abs().sqrt(),
 "Reciprocal": lambda dt: x2(dt).reciprocal(),
 "Erf": lambda dt: x2(dt).erf(),
 "Gelu": lambda dt: F.gelu(x2(dt)),
 "Sigmoid": lambda dt: x2(dt).sigmoid(),
 "Tanh": lambda dt: x2(dt).tanh(),
 "Softplus": lambda dt: F.softplus(x2(dt)),
 "GridSample": lambda dt: F.grid_sample(x4(dt), torch.rand(2, 4, 4, 2, dtype=dt) * 2 - 1, align_corners=False),
 "LSTM": lambda dt: torch.nn.LSTM(8, 8).to(dt)(torch.randn(3, 2, 8, dtype=dt))[0],
 "Mul": lambda dt: x2(dt) * x2(dt),
 "Div": lambda dt: x2(dt) / x2(dt),
}
mixed = {
 "Concat": lambda: torch.cat([x2(torch.float32), x2(torch.bfloat16)]),
 "Add": lambda: x2(torch.float32) + x2(torch.bfloat16),
 "Where": lambda: torch.where(x2(torch.float32) > 0, x2(torch.float32), x2(torch.bfloat16)),
 "Stack": lambda: torch.stack([x2(torch.float32), x2(torch.bfloat16)]),
}
print("torch", torch.__version__)
for name, f in ops.items():
    res = []
    for dt in (torch.float32, torch.bfloat16):
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = f(dt)
            res.append(str(y.dtype).replace("torch.", ""))
        except Exception as e:
            res.append("ERR:" + str(e)[:40])
    low = res[0] == "bfloat16"
    fp32 = res[1] == "float32"
    cls = "low" if low else ("fp32" if fp32 else "follow")
    print(f"{name:32s} fp32-in->{res[0]:9s} bf16-in->{res[1]:9s} {cls}")
for name, f in mixed.items():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = f()
    print(f"{name:32s} mixed->{y.dtype}")
