// The Python front end's native part (`vramsim._vramsim`): the same library calls the CLI makes
// (engine/), taking the CLI's options as keywords and returning the CLI's --json objects as JSON
// text, which python/vramsim/api.py turns into result objects. Errors raise vramsim.Error with
// the message the CLI prints. Nothing here knows more than the CLI does: options are validated
// by the same engine functions, so a bad option gets the same message. Nothing under cli/ is
// used: that is the command line's flag handling and printing.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/estimate.h"
#include "engine/fit.h"
#include "engine/inspect.h"
#include "engine/plan.h"
#include "engine/snapshot.h"
#include "importer/importer.h"
#include "reports/report.h"

namespace py = pybind11;

namespace vramsim {
namespace {

struct PyError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename T>
T Take(Result<T> r) {
  if (!r) throw PyError(r.error().message);
  return std::move(r.value());
}

void Check(const Status& s) {
  if (!s) throw PyError(s.message());
}

// dims={"batch": 8} as the CLI's --dim specs, so the same checks and messages apply.
std::map<std::string, int64_t> Dims(const std::map<std::string, py::object>& dims) {
  std::vector<std::string> specs;
  for (const auto& [k, v] : dims) {
    if (!py::isinstance<py::int_>(v) || py::isinstance<py::bool_>(v)) {
      throw PyError("--dim " + k + ": '" + std::string(py::str(v)) + "' is not an integer");
    }
    specs.push_back(k + "=" + std::string(py::str(v)));
  }
  std::map<std::string, int64_t> out;
  Check(ParseDimSpecs(specs, &out));
  return out;
}

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : ",") + x;
  return s;
}

// The training keywords, as EstimateFlags (the CLI's training flags).
EstimateFlags Flags(const py::kwargs& kw) {
  EstimateFlags f;
  for (const auto& [key, value] : kw) {
    const std::string k = py::str(key);
    auto str = [&]() { return value.cast<std::string>(); };
    auto list = [&]() {
      if (py::isinstance<py::str>(value)) return std::vector<std::string>{str()};
      return value.cast<std::vector<std::string>>();
    };
    try {
      if (k == "optimizer") {
        f.optimizer = str();
      } else if (k == "optimizer_impl") {
        f.optimizer_impl = str();
      } else if (k == "target") {
        f.target = str();
      } else if (k == "loss") {
        f.loss = str();
      } else if (k == "precision") {
        f.precision = str();
      } else if (k == "torch_version") {
        f.torch_version = str();
      } else if (k == "loss_precision") {
        f.loss_precision = str();
      } else if (k == "attention") {
        f.attention = str();
      } else if (k == "accum") {
        f.accum = value.cast<int>();
      } else if (k == "cpu_threads") {
        f.cpu_threads = value.cast<int>();
      } else if (k == "dim_name") {
        f.dim_name = str();
      } else if (k == "checkpoint") {
        f.checkpoint = Join(list());
      } else if (k == "data_parallel") {
        f.data_parallel = value.cast<int>();
      } else if (k == "zero") {
        f.zero = value.cast<int>();
      } else if (k == "tensor_parallel") {
        f.tensor_parallel = value.cast<int>();
      } else if (k == "sequence_parallel") {
        f.sequence_parallel = value.cast<bool>();
      } else if (k == "context_parallel") {
        f.context_parallel = value.cast<int>();
      } else if (k == "zero_rank") {
        f.zero_rank = value.cast<int>();
      } else if (k == "pipeline_parallel") {
        f.pipeline_parallel = value.cast<int>();
      } else if (k == "schedule") {
        f.schedule = str();
      } else if (k == "virtual_stages") {
        f.virtual_stages = value.cast<int>();
      } else if (k == "stages") {
        f.stages = Join(list());
      } else if (k == "pipeline_stage") {
        f.pipeline_stage = value.cast<int>();
      } else if (k == "fsdp") {
        f.fsdp = str();
      } else if (k == "gpus_per_node") {
        f.gpus_per_node = value.cast<int>();
      } else if (k == "offload") {
        f.offload = str();
      } else if (k == "allow_constant_weights") {
        f.allow_constant_weights = value.cast<bool>();
      } else if (k == "trainable") {
        f.trainable = list();
      } else if (k == "freeze") {
        f.freeze = list();
      } else {
        throw PyError("unknown option '" + k + "'");
      }
    } catch (const py::cast_error&) {
      throw PyError("option '" + k + "' has the wrong type (" +
                    std::string(py::str(value.get_type().attr("__name__"))) + ")");
    }
  }
  return f;
}

// One estimate, kept for its reports.
struct EstimateResult {
  std::string model;
  std::string summary;
  std::shared_ptr<Estimate> estimate;
  std::string json;

  ReportInput Report() const {
    return {model, summary, &estimate->plan, &estimate->trace, &estimate->peak};
  }
};

EstimateResult RunEstimateCall(const std::string& model,
                               const std::map<std::string, py::object>& dims_in, int top,
                               const py::kwargs& kw) {
  EstimateFlags flags = Flags(kw);
  auto dims = Dims(dims_in);
  EstimateOptions options = Take(ParseEstimateFlags(flags));
  EstimateResult r;
  {
    py::gil_scoped_release release;  // the simulation is C++ only
    auto e = EstimateModel(model, dims, options);
    if (!e) {
      py::gil_scoped_acquire acquire;
      throw PyError(e.error().message);
    }
    r.estimate = std::make_shared<Estimate>(std::move(e.value()));
  }
  if (top < 0) throw PyError("top must be at least 0");
  r.model = model;
  r.summary = SummaryLine(dims, flags);
  r.json = EstimateJson(*r.estimate, static_cast<size_t>(top)).dump();
  return r;
}

std::string Inspect(const std::string& model, const std::map<std::string, py::object>& dims,
                    const std::vector<std::string>& trainable,
                    const std::vector<std::string>& freeze, bool allow_constant_weights) {
  ImportOptions options;
  options.dims = Dims(dims);
  options.allow_constant_weights = allow_constant_weights;
  auto t = Take(ParseParameterPatterns("--trainable", trainable));
  auto f = Take(ParseParameterPatterns("--freeze", freeze));
  Graph g = Take(ImportModel(model, options));
  nlohmann::json j = InspectJson(g);
  j["trainable_parameters"] = TrainableJson(Take(CountTrainable(g, {t, f})));
  return j.dump();
}

FitOptions FitOpts(const std::string& gpu, uint64_t gpu_memory, bool expandable_segments) {
  return Take(MakeFitOptions(gpu, gpu_memory, expandable_segments));
}

// fit and max-batch: the same options, one device, a report rendered as the CLI's JSON.
template <typename Run, typename ToJson>
std::string DeviceCall(const std::string& model, const std::string& gpu,
                       const std::map<std::string, py::object>& dims, uint64_t gpu_memory,
                       bool expandable_segments, const py::kwargs& kw, Run run, ToJson to_json) {
  EstimateFlags flags = Flags(kw);
  auto d = Dims(dims);
  EstimateOptions options = Take(ParseEstimateFlags(flags));
  FitOptions fit = FitOpts(gpu, gpu_memory, expandable_segments);
  py::gil_scoped_release release;
  auto r = run(model, d, options, fit);
  py::gil_scoped_acquire acquire;
  return to_json(Take(std::move(r)), fit).dump();
}

std::string FitCall(const std::string& model, const std::string& gpu,
                    const std::map<std::string, py::object>& dims, uint64_t gpu_memory,
                    bool expandable_segments, const py::kwargs& kw) {
  return DeviceCall(
      model, gpu, dims, gpu_memory, expandable_segments, kw,
      [](const auto& m, const auto& d, const auto& o, const auto& f) { return Fit(m, d, o, f); },
      [](const auto& r, const auto& f) { return FitReportJson(r, f); });
}

std::string MaxBatchCall(const std::string& model, const std::string& gpu,
                         const std::map<std::string, py::object>& dims, uint64_t gpu_memory,
                         bool expandable_segments, const py::kwargs& kw) {
  return DeviceCall(
      model, gpu, dims, gpu_memory, expandable_segments, kw,
      [](const auto& m, const auto& d, const auto& o, const auto& f) {
        return MaxBatch(m, d, o, f);
      },
      [](const auto& r, const auto& f) { return MaxBatchJson(r, f); });
}

// plan: the budget as text ("6GiB", or bytes: python/vramsim/api.py turns budget_bytes into it)
// or a fraction of the peak without checkpointing.
std::string PlanCall(const std::string& model, const std::map<std::string, py::object>& dims,
                     const std::string& budget, std::optional<double> budget_fraction,
                     const std::string& strategy, double time_limit_s, const py::kwargs& kw) {
  EstimateFlags flags = Flags(kw);
  auto d = Dims(dims);
  PlanSearchOptions options;
  options.budget = budget;
  options.budget_fraction = budget_fraction;
  options.strategy = strategy;
  options.time_limit_s = time_limit_s;
  py::gil_scoped_release release;  // the planners can run for up to time_limit_s
  auto r = Plan(model, d, flags, options);
  py::gil_scoped_acquire acquire;
  return PlanJson(Take(std::move(r))).dump();
}

// strategies, kept for its HTML page.
struct StrategiesResult {
  std::shared_ptr<StrategiesReport> report;
  std::string json;
};

StrategiesResult StrategiesCall(const std::string& model, const std::vector<std::string>& budgets,
                                const std::map<std::string, py::object>& dims,
                                const std::string& strategy, double time_limit_s,
                                const py::kwargs& kw) {
  EstimateFlags flags = Flags(kw);
  auto d = Dims(dims);
  StrategiesOptions options;
  options.budgets = budgets;
  options.strategy = strategy;
  options.time_limit_s = time_limit_s;
  StrategiesResult out;
  {
    py::gil_scoped_release release;
    auto r = Strategies(model, d, flags, options);
    py::gil_scoped_acquire acquire;
    out.report = std::make_shared<StrategiesReport>(Take(std::move(r)));
  }
  out.json = StrategiesJson(*out.report).dump();
  return out;
}

struct CompareResult {
  std::string json, text;
};

CompareResult CompareCall(const std::string& snapshot, const std::string& model,
                          const std::map<std::string, py::object>& dims_in, double threshold,
                          const std::string& gpu, bool warmup_step, const py::kwargs& kw) {
  EstimateFlags flags = Flags(kw);
  auto dims = Dims(dims_in);
  EstimateOptions options = Take(ParseEstimateFlags(flags));
  CompareOptions o;
  o.divergence_fraction = threshold;
  o.snapshot.gpu = gpu;
  o.snapshot.warmup_step = warmup_step;
  std::optional<Result<SnapshotComparison>> c;
  {
    py::gil_scoped_release release;
    c.emplace(CompareSnapshotWithModel(snapshot, model, dims, options, o));
  }
  SnapshotComparison comparison = Take(std::move(*c));
  return {SnapshotComparisonJson(comparison).dump(), RenderSnapshotComparison(comparison)};
}

}  // namespace
}  // namespace vramsim

PYBIND11_MODULE(_vramsim, m) {
  using namespace vramsim;
  m.doc() = "vramsim's native calls (use the vramsim package, not this module)";
  py::register_exception<vramsim::PyError>(m, "NativeError");
  py::class_<EstimateResult>(m, "EstimateResult")
      .def_readonly("json", &EstimateResult::json)
      .def_readonly("summary", &EstimateResult::summary)
      .def("write_html", [](const EstimateResult& r,
                            const std::string& path) { Check(WriteHtmlReport(r.Report(), path)); })
      .def("write_trace",
           [](const EstimateResult& r, const std::string& path) {
             Check(WriteChromeTrace(r.Report(), path));
           })
      .def(
          "write_snapshot",
          [](const EstimateResult& r, const std::string& path, const std::string& gpu) {
            SnapshotOptions o;
            o.gpu = gpu;
            auto s = WriteEstimateSnapshot(*r.estimate, path, o);
            if (!s) throw PyError(s.error().message);
          },
          py::arg("path"), py::arg("gpu") = "");
  py::class_<CompareResult>(m, "CompareResult")
      .def_readonly("json", &CompareResult::json)
      .def_readonly("text", &CompareResult::text);
  m.def("compare", &CompareCall, py::arg("snapshot"), py::arg("model"),
        py::arg("dims") = std::map<std::string, py::object>{}, py::arg("threshold") = 0.05,
        py::arg("gpu") = "", py::arg("warmup_step") = true);
  m.def("estimate", &RunEstimateCall, py::arg("model"),
        py::arg("dims") = std::map<std::string, py::object>{}, py::arg("top") = 12);
  m.def("inspect", &Inspect, py::arg("model"),
        py::arg("dims") = std::map<std::string, py::object>{},
        py::arg("trainable") = std::vector<std::string>{},
        py::arg("freeze") = std::vector<std::string>{}, py::arg("allow_constant_weights") = false);
  m.def("fit", &FitCall, py::arg("model"), py::arg("gpu"),
        py::arg("dims") = std::map<std::string, py::object>{}, py::arg("gpu_memory") = 0,
        py::arg("expandable_segments") = false);
  m.def("max_batch", &MaxBatchCall, py::arg("model"), py::arg("gpu"),
        py::arg("dims") = std::map<std::string, py::object>{}, py::arg("gpu_memory") = 0,
        py::arg("expandable_segments") = false);
  m.def("plan", &PlanCall, py::arg("model"), py::arg("dims") = std::map<std::string, py::object>{},
        py::arg("budget") = "", py::arg("budget_fraction") = std::nullopt, py::arg("strategy") = "",
        py::arg("time_limit_s") = 60.0);
  py::class_<StrategiesResult>(m, "StrategiesResult")
      .def_readonly("json", &StrategiesResult::json)
      .def("write_html", [](const StrategiesResult& r, const std::string& path) {
        Check(WriteStrategiesReportHtml(*r.report, path));
      });
  m.def("strategies", &StrategiesCall, py::arg("model"), py::arg("budgets"),
        py::arg("dims") = std::map<std::string, py::object>{}, py::arg("strategy") = "",
        py::arg("time_limit_s") = 60.0);
}
