// Python's references to module arguments. In eager PyTorch a tensor passed to a module's
// forward stays referenced by that call's frame (and by the caller's variable) until the
// module returns, even when the module's own ops are done with it: in torchvision's
// InvertedResidual `return self.conv(x)` keeps the block input x alive during the whole
// block, and `y = self.mlp(y)` keeps the LayerNorm output alive during the whole MLP. When
// training every weight, the first op of the module usually saves that tensor anyway; with
// frozen weights (nothing saved) the reference decides how long it lives.
//
// The call structure comes from the ONNX node names, which carry one "/name/" component per
// module call ("/features/features.2/conv/conv.1/conv.1.0/Conv"; a ModuleList, which is not
// called, adds no component: "/h.0/attn/..."). A tensor made outside a call and read inside
// it is held until the last op of the outermost such call (PlanOp::frame_releases).
#pragma once

#include "simulator/plan.h"

namespace vramsim {

// Fills PlanOp::frame_releases of the plan (ops in schedule order, node names as exported).
void AddModuleArgumentHolds(TrainingPlan& plan);

}  // namespace vramsim
