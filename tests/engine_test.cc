// The library layer (engine/) as the front ends call it: plan and strategies without the CLI,
// their reports and refusals, and that nothing below the front ends includes one.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/fit.h"
#include "engine/plan.h"

namespace vramsim {
namespace {

const std::string kExamples = VRAMSIM_EXAMPLES;
const std::map<std::string, int64_t> kGptDims = {{"batch", 16}, {"seq", 256}};

PlanSearchOptions Fraction(double f) {
  PlanSearchOptions o;
  o.budget_fraction = f;
  return o;
}

TEST(EnginePlan, GptAtTwoThirdsOfItsPeakFits) {
  auto r = Plan(kExamples + "/gpt.onnx", kGptDims, {}, Fraction(0.65));
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_TRUE(r->fits());
  const auto& p = std::get<OnnxPlan>(r->plan);
  EXPECT_LE(p.chosen().peak_bytes, p.budget_bytes);
  EXPECT_EQ(p.budget_bytes, static_cast<uint64_t>(0.65 * p.baseline_peak_bytes));
  EXPECT_FALSE(p.chosen().checkpoint.empty());
  EXPECT_TRUE(PlanNoFitMessage(*r).empty());
  nlohmann::json j = PlanJson(*r);
  EXPECT_EQ(j["peak_bytes"], p.chosen().peak_bytes);
  EXPECT_EQ(j["strategies"].size(), p.results.size());
  EXPECT_NE(PlanText(*r).find("plan (" + p.chosen().strategy + ")"), std::string::npos);
}

// A plan that does not fit is a report, with the reason the CLI prints; not an error.
TEST(EnginePlan, ResnetAtHalfItsPeakDoesNotFit) {
  EstimateFlags sgd;
  sgd.optimizer = "sgd";
  auto r = Plan(kExamples + "/resnet18.onnx", {{"batch", 16}}, sgd, Fraction(0.5));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(r->fits());
  const auto& p = std::get<OnnxPlan>(r->plan);
  // Below the floor no plan can fit, and the message says so.
  EXPECT_EQ(
      PlanNoFitMessage(*r).rfind(p.BudgetBelowFloor() ? "no checkpoint plan can fit the budget of "
                                                      : "no checkpoint plan fits the budget of ",
                                 0),
      0u);
  EXPECT_LE(p.floor_bytes, p.chosen().peak_bytes);
  EXPECT_EQ(PlanJson(*r)["fits"], false);
  EXPECT_EQ(PlanJson(*r)["budget_below_floor"], p.floor_bytes > p.budget_bytes);
}

TEST(EnginePlan, RefusesWithTheClisMessages) {
  const std::string gpt = kExamples + "/gpt.onnx";
  auto message = [&](const PlanSearchOptions& o, const EstimateFlags& f = {}) {
    auto r = Plan(gpt, kGptDims, f, o);
    return r.ok() ? std::string("ok") : r.error().message;
  };
  EXPECT_EQ(message({}), "plan needs --budget SIZE (e.g. 6GiB) or --budget-fraction F");
  PlanSearchOptions both = Fraction(0.5);
  both.budget = "1GiB";
  EXPECT_EQ(message(both), "give --budget or --budget-fraction, not both");
  EXPECT_EQ(message(Fraction(0)), "--budget-fraction must be in (0, 100], got 0");
  PlanSearchOptions slow = Fraction(0.5);
  slow.time_limit_s = -1;
  EXPECT_EQ(message(slow), "--time-limit must be a number of seconds in (0, 1e6], got -1");
  PlanSearchOptions bad;
  bad.budget = "6 GiBs";
  EXPECT_EQ(message(bad).rfind("--budget: '6 GiBs' is not a size", 0), 0u);
  EstimateFlags ckpt;
  ckpt.checkpoint = "h.0";
  EXPECT_EQ(message(Fraction(0.5), ckpt), "--checkpoint is what the planner chooses; leave it out");
}

TEST(EngineStrategies, EveryStrategyAtEveryBudget) {
  StrategiesOptions o;
  o.budgets = {"40MiB", "1GiB"};
  auto r = Strategies(kExamples + "/gpt.onnx", kGptDims, {}, o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_FALSE(r->rows.empty());
  EXPECT_EQ(r->rows.size() % 2, 0u);
  EXPECT_EQ(r->rows.front().budget_bytes, 40u << 20);
  EXPECT_EQ(r->rows.back().budget_bytes, 1u << 30);
  EXPECT_EQ(StrategiesJson(*r)["rows"].size(), r->rows.size());
  o.budgets = {};
  EXPECT_EQ(CheckStrategiesOptions(o).message(),
            "strategies needs --budgets SIZE[,SIZE]... (e.g. 4GiB,6GiB)");
  o.budgets = {"4GiB", ""};
  EXPECT_EQ(CheckStrategiesOptions(o).message().rfind("--budgets: '' is not a size", 0), 0u);
}

TEST(EngineFit, FitsWithoutTheCli) {
  auto options = ParseEstimateFlags({});
  ASSERT_TRUE(options.ok());
  auto device = MakeFitOptions("a100-80gb", 0, false);
  ASSERT_TRUE(device.ok());
  auto r = Fit(kExamples + "/gpt.onnx", {{"batch", 8}, {"seq", 128}}, *options, *device);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->base.fits);
  EXPECT_EQ(FitReportJson(*r, *device)["fits"], true);
}

}  // namespace
}  // namespace vramsim
