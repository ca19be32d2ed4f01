// The reports on a hand-built trace whose live bytes are worked out below by hand.
#include "reports/report.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "simulator/peak.h"
#include "simulator/plan.h"
#include "simulator/trace.h"

namespace vramsim {
namespace {

using nlohmann::json;
using Kind = Event::Kind;

constexpr size_t P = static_cast<size_t>(Category::kParameters);
constexpr size_t G = static_cast<size_t>(Category::kGradients);
constexpr size_t O = static_cast<size_t>(Category::kOptimizerState);
constexpr size_t S = static_cast<size_t>(Category::kSavedActivations);
constexpr size_t T = static_cast<size_t>(Category::kTransient);
constexpr size_t B = static_cast<size_t>(Category::kBatch);

// Step  events                                      live after  high-water in the step
// 0 setup     alloc w(1000 P) m(1000 O) x(400 B)      2400
// 1 forward   alloc conv_out(3000 S)                  5400
// 2 forward   alloc gemm_out(200 T) ws(300 T), free ws 5600     5900 (mid-step)
// 3 loss      free gemm_out                           5400
// 4 backward  alloc grad(1000 G), free conv_out       3400      6400 (the peak)
// 5 optimizer alloc tmp(500 T), free tmp              3400      3900 (mid-step)
// 6 end       free grad, free x                       2000
Trace HandTrace() {
  Trace t;
  auto buffer = [&](std::string name, uint64_t bytes, Category c, std::string scope,
                    std::string why) {
    t.buffers.push_back(
        {std::move(name), bytes, c, DType::kFloat32, {2, 3}, std::move(scope), std::move(why)});
  };
  buffer("layer1.0.conv1.weight", 1000, Category::kParameters, "", "parameter");  // 0
  buffer("input<&>\"x\"", 400, Category::kBatch, "", "batch input");              // 1
  buffer("/conv/Conv_output_0", 3000, Category::kSavedActivations, "conv",        // 2
         "saved for the backward of /relu/Relu");
  buffer("/head/Gemm_output_0", 200, Category::kTransient, "head", "read by the loss");  // 3
  buffer("grad of layer1.0.conv1.weight", 1000, Category::kGradients, "",                // 4
         "parameter gradient");
  buffer("adam state 0 of layer1.0.conv1.weight", 1000, Category::kOptimizerState, "",  // 5
         "optimizer state");
  buffer("/head/Gemm:workspace", 300, Category::kTransient, "head", "workspace");  // 6
  buffer("adam temporary", 500, Category::kTransient, "", "optimizer temporary");  // 7

  t.steps = {
      {Phase::kSetup, "steady state", "setup", "", 0},
      {Phase::kForward, "/conv/Conv", "Conv", "conv", 100},
      {Phase::kForward, "/head/Gemm</script><script>alert(1)</script>", "Gemm", "head", 50},
      {Phase::kLoss, "loss", "cross_entropy", "", 0},
      {Phase::kBackward, "/conv/Conv", "Conv backward", "conv", 200},
      {Phase::kOptimizer, "optimizer step", "adam", "", 0},
      {Phase::kEnd, "end of step", "release outputs", "", 0},
  };
  t.events = {
      {Kind::kAlloc, 0, 0}, {Kind::kAlloc, 5, 0}, {Kind::kAlloc, 1, 0},  // setup
      {Kind::kAlloc, 2, 1},                                              // conv
      {Kind::kAlloc, 3, 2}, {Kind::kAlloc, 6, 2}, {Kind::kFree, 6, 2},   // gemm
      {Kind::kFree, 3, 3},                                               // loss
      {Kind::kAlloc, 4, 4}, {Kind::kFree, 2, 4},                         // backward
      {Kind::kAlloc, 7, 5}, {Kind::kFree, 7, 5},                         // optimizer
      {Kind::kFree, 4, 6},  {Kind::kFree, 1, 6},                         // end
  };
  return t;
}

using Bytes = std::array<uint64_t, kCategoryCount>;

Bytes Cat(std::initializer_list<std::pair<size_t, uint64_t>> parts) {
  Bytes b{};
  for (auto [c, v] : parts) b[c] = v;
  return b;
}

// Live bytes by category after each step of HandTrace().
const std::vector<Bytes>& ExpectedAfterStep() {
  static const std::vector<Bytes> kAfter = {
      Cat({{P, 1000}, {O, 1000}, {B, 400}}),
      Cat({{P, 1000}, {O, 1000}, {B, 400}, {S, 3000}}),
      Cat({{P, 1000}, {O, 1000}, {B, 400}, {S, 3000}, {T, 200}}),
      Cat({{P, 1000}, {O, 1000}, {B, 400}, {S, 3000}}),
      Cat({{P, 1000}, {O, 1000}, {B, 400}, {G, 1000}}),
      Cat({{P, 1000}, {O, 1000}, {B, 400}, {G, 1000}}),
      Cat({{P, 1000}, {O, 1000}}),
  };
  return kAfter;
}

// The mid-step samples: steps whose high-water is above their start and their end.
const std::map<double, Bytes>& ExpectedMidStep() {
  static const std::map<double, Bytes> kMid = {
      {2.5, Cat({{P, 1000}, {O, 1000}, {B, 400}, {S, 3000}, {T, 500}})},
      {4.5, Cat({{P, 1000}, {O, 1000}, {B, 400}, {S, 3000}, {G, 1000}})},
      {5.5, Cat({{P, 1000}, {O, 1000}, {B, 400}, {G, 1000}, {T, 500}})},
  };
  return kMid;
}

uint64_t Sum(const Bytes& b) {
  uint64_t s = 0;
  for (uint64_t v : b) s += v;
  return s;
}

class ReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("vramsim_report_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    trace_ = HandTrace();
    peak_ = FindPeak(trace_);
    in_ = {"tiny<model>.onnx", "batch=2, adam & friends", nullptr, &trace_, &peak_};
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  static std::string Read(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

  json TraceJson() {
    std::string path = Path("t.json");
    Status s = WriteChromeTrace(in_, path);
    EXPECT_TRUE(s.ok()) << s.message();
    return json::parse(Read(path));  // throws, failing the test, when it is not JSON
  }

  std::string Html() {
    std::string path = Path("r.html");
    Status s = WriteHtmlReport(in_, path);
    EXPECT_TRUE(s.ok()) << s.message();
    return Read(path);
  }

  std::filesystem::path dir_;
  Trace trace_;
  PeakReport peak_;
  ReportInput in_;
};

TEST_F(ReportTest, HandTraceIsWhatTheCommentsSay) {
  EXPECT_EQ(peak_.peak_bytes, 6400u);
  EXPECT_EQ(peak_.peak_step, 4);
  EXPECT_EQ(peak_.live_at_peak, (std::vector<BufferId>{2, 0, 4, 5, 1}));
}

TEST_F(ReportTest, TraceHasTheTracksAndOneSlicePerStep) {
  json j = TraceJson();
  ASSERT_TRUE(j.contains("traceEvents"));
  ASSERT_TRUE(j["traceEvents"].is_array());
  std::map<int, std::string> threads;
  std::string process;
  std::vector<json> slices;
  for (const json& e : j["traceEvents"]) {
    ASSERT_TRUE(e.contains("ph"));
    ASSERT_TRUE(e.contains("pid"));
    if (e["ph"] == "M" && e["name"] == "thread_name") {
      threads[e["tid"].get<int>()] = e["args"]["name"].get<std::string>();
    }
    if (e["ph"] == "M" && e["name"] == "process_name") process = e["args"]["name"];
    if (e["ph"] == "X") slices.push_back(e);
  }
  EXPECT_EQ(process, "vramsim: tiny<model>.onnx");
  std::map<std::string, int> tid_of;
  for (const auto& [tid, name] : threads) tid_of[name] = tid;
  for (const char* track : {"step", "forward", "loss", "backward", "optimizer"}) {
    EXPECT_TRUE(tid_of.count(track)) << "no thread named " << track;
  }
  EXPECT_EQ(tid_of.size(), 5u);

  ASSERT_EQ(slices.size(), trace_.steps.size());
  const char* expected_track[] = {"step",     "forward",   "forward", "loss",
                                  "backward", "optimizer", "step"};
  for (size_t i = 0; i < slices.size(); ++i) {
    const json& e = slices[i];
    EXPECT_DOUBLE_EQ(e["ts"].get<double>(), static_cast<double>(i)) << i;
    EXPECT_DOUBLE_EQ(e["dur"].get<double>(), 1.0) << i;
    EXPECT_EQ(e["name"], trace_.steps[i].name) << i;
    EXPECT_EQ(threads[e["tid"].get<int>()], expected_track[i]) << i;
    EXPECT_EQ(e["args"]["op_type"], trace_.steps[i].op_type) << i;
    EXPECT_EQ(e["args"]["live_bytes_after"].get<uint64_t>(), Sum(ExpectedAfterStep()[i])) << i;
  }
}

TEST_F(ReportTest, CountersAreTheHandComputedLiveBytes) {
  json j = TraceJson();
  std::map<double, json> by_category, total;
  for (const json& e : j["traceEvents"]) {
    if (e["ph"] != "C") continue;
    double ts = e["ts"].get<double>();
    if (e["name"] == "live bytes") {
      EXPECT_FALSE(by_category.count(ts)) << "two samples at " << ts;
      by_category[ts] = e["args"];
    } else if (e["name"] == "live bytes total") {
      total[ts] = e["args"];
    } else {
      ADD_FAILURE() << "unexpected counter " << e.dump();
    }
  }
  // 0, after each of the 7 steps, and the 3 mid-step high-water marks.
  EXPECT_EQ(by_category.size(), 1 + 7 + 3u);
  EXPECT_EQ(total.size(), by_category.size());

  auto check = [&](double ts, const Bytes& expected) {
    ASSERT_TRUE(by_category.count(ts)) << "no sample at " << ts;
    for (size_t c = 0; c < kCategoryCount; ++c) {
      std::string name(CategoryName(static_cast<Category>(c)));
      ASSERT_TRUE(by_category[ts].contains(name)) << name;
      EXPECT_EQ(by_category[ts][name].get<uint64_t>(), expected[c]) << name << " at " << ts;
    }
    EXPECT_EQ(total[ts]["total"].get<uint64_t>(), Sum(expected)) << "at " << ts;
  };
  check(0.0, Bytes{});
  for (size_t i = 0; i < ExpectedAfterStep().size(); ++i) {
    check(static_cast<double>(i + 1), ExpectedAfterStep()[i]);
  }
  for (const auto& [ts, bytes] : ExpectedMidStep()) check(ts, bytes);
}

TEST_F(ReportTest, PeakIsAnInstantAtItsSample) {
  json j = TraceJson();
  std::vector<json> instants;
  for (const json& e : j["traceEvents"]) {
    if (e["ph"] == "i") instants.push_back(e);
  }
  ASSERT_EQ(instants.size(), 1u);
  const json& peak = instants[0];
  EXPECT_DOUBLE_EQ(peak["ts"].get<double>(), 4.5);
  EXPECT_EQ(peak["s"], "g");
  EXPECT_EQ(peak["args"]["peak_bytes"].get<uint64_t>(), 6400u);
  EXPECT_EQ(peak["args"]["step"].get<int>(), 4);
  EXPECT_EQ(peak["args"]["op_type"], "Conv backward");
  EXPECT_EQ(peak["args"]["by_category"]["saved_activations"].get<uint64_t>(), 3000u);
  EXPECT_EQ(j["otherData"]["peak_bytes"].get<uint64_t>(), 6400u);
}

TEST_F(ReportTest, CountersRoundAsTheTargetCounts) {
  TrainingPlan plan;
  plan.target.round_bytes = 512;
  in_.plan = &plan;
  peak_ = FindPeak(trace_, 512);
  json j = TraceJson();
  uint64_t max_total = 0;
  for (const json& e : j["traceEvents"]) {
    if (e["ph"] == "C" && e["name"] == "live bytes total") {
      max_total = std::max(max_total, e["args"]["total"].get<uint64_t>());
      if (e["ts"].get<double>() == 1.0) {
        EXPECT_EQ(e["args"]["total"].get<uint64_t>(), 1024u + 1024u + 512u);
      }
    }
  }
  EXPECT_EQ(max_total, peak_.peak_bytes);
}

TEST_F(ReportTest, WithoutAPeakReportTheReportsFindIt) {
  in_.peak = nullptr;
  json j = TraceJson();
  bool found = false;
  for (const json& e : j["traceEvents"]) {
    if (e["ph"] == "i") {
      found = true;
      EXPECT_EQ(e["args"]["peak_bytes"].get<uint64_t>(), 6400u);
    }
  }
  EXPECT_TRUE(found);
  EXPECT_NE(Html().find("6,400 bytes"), std::string::npos);
}

// (No std::regex here: GCC 12 warns a false -Wmaybe-uninitialized on it under the sanitizers.)
size_t Count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

std::string StripTags(const std::string& html) {
  std::string out;
  bool in_tag = false;
  for (char c : html) {
    if (c == '<') {
      in_tag = true;
    } else if (c == '>') {
      in_tag = false;
    } else if (!in_tag) {
      out += c;
    }
  }
  return out;
}

// The text between `open`'s end and the next `close` after `*at`, advancing *at past it.
bool NextElement(const std::string& html, const std::string& open, const std::string& close,
                 size_t* at, std::string* inner) {
  size_t start = html.find(open, *at);
  if (start == std::string::npos) return false;
  size_t content = html.find('>', start);
  size_t end = html.find(close, content);
  if (content == std::string::npos || end == std::string::npos) return false;
  *inner = html.substr(content + 1, end - content - 1);
  *at = end + close.size();
  return true;
}

// The rows of the table with this id, each as its cells' text (tags dropped).
std::vector<std::vector<std::string>> TableRows(const std::string& html, const std::string& id) {
  std::vector<std::vector<std::string>> rows;
  size_t start = html.find("<table id=\"" + id + "\"");
  if (start == std::string::npos) return rows;
  size_t body = html.find("<tbody>", start), end = html.find("</table>", start);
  std::string table = html.substr(body, end - body), row;
  for (size_t r = 0; NextElement(table, "<tr", "</tr>", &r, &row);) {
    std::vector<std::string> cells;
    std::string cell;
    for (size_t c = 0; NextElement(row, "<td", "</td>", &c, &cell);)
      cells.push_back(StripTags(cell));
    rows.push_back(cells);
  }
  return rows;
}

// The value of `attribute` in the first element that has `marker`.
std::string AttributeAfter(const std::string& html, const std::string& marker,
                           const std::string& attribute) {
  size_t at = html.find(marker);
  if (at == std::string::npos) return "";
  size_t tag_end = html.find('>', at);
  size_t value = html.find(" " + attribute + "=\"", at);
  if (value == std::string::npos || value > tag_end) return "";
  value += attribute.size() + 3;
  return html.substr(value, html.find('"', value) - value);
}

TEST_F(ReportTest, HtmlListsTheTensorsAliveAtThePeakLargestFirst) {
  std::string html = Html();
  auto rows = TableRows(html, "tensors");
  ASSERT_EQ(rows.size(), 5u);
  // # | tensor | made by | scope | shape | dtype | bytes | category | why alive
  std::vector<std::string> names, made, bytes, categories;
  for (const auto& r : rows) {
    ASSERT_EQ(r.size(), 9u);
    names.push_back(r[1]);
    made.push_back(r[2]);
    bytes.push_back(r[6]);
    categories.push_back(r[7]);
  }
  EXPECT_EQ(names,
            (std::vector<std::string>{
                "/conv/Conv_output_0", "layer1.0.conv1.weight", "grad of layer1.0.conv1.weight",
                "adam state 0 of layer1.0.conv1.weight", "input&lt;&amp;&gt;&quot;x&quot;"}));
  EXPECT_EQ(bytes, (std::vector<std::string>{"2.93 KiB", "1000 B", "1000 B", "1000 B", "400 B"}));
  EXPECT_EQ(categories, (std::vector<std::string>{"saved activations", "parameters", "gradients",
                                                  "optimizer state", "batch"}));
  EXPECT_NE(made[0].find("/conv/Conv"), std::string::npos);
  EXPECT_NE(made[0].find("step 1"), std::string::npos);
  EXPECT_NE(made[2].find("Conv backward"), std::string::npos);
  EXPECT_EQ(rows[0][3], "conv");
  EXPECT_EQ(rows[0][4], "[2, 3]");
  EXPECT_EQ(rows[0][5], "float32");
  EXPECT_EQ(rows[0][8], "saved for the backward of /relu/Relu");
}

TEST_F(ReportTest, HtmlGroupsThePeakByScope) {
  std::string html = Html();
  auto rows = TableRows(html, "scopes");
  // scope | bytes | share | tensors | by category | largest tensor
  ASSERT_EQ(rows.size(), 3u);
  std::map<std::string, std::vector<std::string>> by_scope;
  for (const auto& r : rows) {
    ASSERT_EQ(r.size(), 6u);
    by_scope[r[0]] = r;
  }
  ASSERT_TRUE(by_scope.count("conv"));
  ASSERT_TRUE(by_scope.count("layer1.0.conv1"));  // weight, its gradient and its Adam state
  ASSERT_TRUE(by_scope.count("(none)"));          // the batch
  EXPECT_EQ(by_scope["layer1.0.conv1"][1], "2.93 KiB");
  EXPECT_EQ(by_scope["layer1.0.conv1"][3], "3");
  EXPECT_EQ(by_scope["conv"][3], "1");
  EXPECT_EQ(by_scope["(none)"][1], "400 B");
  EXPECT_EQ(by_scope["(none)"][2], "6.2%");
  EXPECT_EQ(rows.back()[0], "(none)");  // the smallest last
}

TEST_F(ReportTest, HtmlTitleAndEscaping) {
  std::string html = Html();
  EXPECT_NE(html.find("<title>vramsim: tiny&lt;model&gt;.onnx \u2014 peak 6.25 KiB \u2014 batch=2, "
                      "adam &amp; friends</title>"),
            std::string::npos);
  EXPECT_EQ(html.find("tiny<model>"), std::string::npos);
  EXPECT_EQ(html.find("input<&>"), std::string::npos);
  // A step name that tries to close the data island stays inside it.
  EXPECT_EQ(html.find("</script><script>alert"), std::string::npos);
  EXPECT_NE(html.find("\\u003c/script>\\u003cscript>alert"), std::string::npos);
}

TEST_F(ReportTest, PagesLoadNothingFromTheNetwork) {
  std::vector<StrategyRow> rows = {{"greedy", 4 << 20, 3 << 20, 2.5, 1.0, true}};
  std::string path = Path("s.html");
  ASSERT_TRUE(WriteStrategiesHtml("m", rows, path).ok());
  for (const std::string& html : {Html(), Read(path)}) {
    EXPECT_EQ(html.find("http://"), std::string::npos);
    EXPECT_EQ(html.find("https://"), std::string::npos);
    std::string lower = html;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    for (const char* attribute : {"src", "href"}) {
      for (size_t at = lower.find(attribute); at != std::string::npos;
           at = lower.find(attribute, at + 1)) {
        size_t next = lower.find_first_not_of(" \t\n", at + std::strlen(attribute));
        EXPECT_FALSE(next != std::string::npos && lower[next] == '=') << lower.substr(at, 60);
      }
    }
    EXPECT_EQ(html.find("<link"), std::string::npos);
    EXPECT_EQ(html.find("@import"), std::string::npos);
    EXPECT_EQ(html.find("url("), std::string::npos);
  }
}

// Parses the chart's JSON island.
json ChartData(const std::string& html) {
  const std::string open = "<script type=\"application/json\" id=\"vramsim-data\">";
  size_t start = html.find(open);
  if (start == std::string::npos) return nullptr;
  start += open.size();
  return json::parse(html.substr(start, html.find("</script>", start) - start));
}

TEST_F(ReportTest, ChartDataHasTheStepsAndThePeak) {
  json data = ChartData(Html());
  ASSERT_TRUE(data.is_object());
  EXPECT_EQ(data["steps"].get<int>(), 7);
  ASSERT_EQ(data["points"].size(), 7u);  // one per step: high-water marks
  EXPECT_EQ(data["points"][4][0].get<int>(), 4);
  uint64_t total = 0;
  for (size_t c = 1; c < data["points"][4].size(); ++c)
    total += data["points"][4][c].get<uint64_t>();
  EXPECT_EQ(total, 6400u);
  EXPECT_EQ(data["peak"]["bytes"].get<uint64_t>(), 6400u);
  EXPECT_EQ(data["peak"]["step"].get<int>(), 4);
  EXPECT_EQ(data["phases"],
            json::parse(R"([["setup",0,1],["forward",1,3],["loss",3,4],["backward",4,5],)"
                        R"(["optimizer",5,6],["end",6,7]])"));
}

// (Not "op" + std::to_string(i): GCC 12 warns a false -Wrestrict on it at -O3.)
std::string Numbered(const char* prefix, int i) {
  std::string s = prefix;
  s += std::to_string(i);
  return s;
}

TEST_F(ReportTest, LongSchedulesAreDownsampledKeepingThePeak) {
  // 10,000 steps: each allocates a buffer freed by the next; step 7777's is the largest.
  Trace t;
  for (int i = 0; i < 10000; ++i) {
    t.steps.push_back({Phase::kForward, Numbered("op", i), "Relu", "", 0});
    t.buffers.push_back({Numbered("t", i),
                         static_cast<uint64_t>(i == 7777 ? 900 : 100 + i % 7),
                         Category::kTransient,
                         DType::kFloat32,
                         {1},
                         "",
                         ""});
    if (i > 0) t.events.push_back({Kind::kFree, i - 1, i});
    t.events.push_back({Kind::kAlloc, i, i});
  }
  t.events.push_back({Kind::kFree, 9999, 9999});
  PeakReport peak = FindPeak(t);
  ASSERT_EQ(peak.peak_step, 7777);
  in_.trace = &t;
  in_.peak = &peak;
  std::string html = Html();
  json data = ChartData(html);
  ASSERT_TRUE(data.is_object());
  EXPECT_LE(data["points"].size(), 2000u);
  EXPECT_GE(data["points"].size(), 1000u);
  bool has_peak = false;
  int last = -1;
  for (const json& p : data["points"]) {
    EXPECT_GT(p[0].get<int>(), last);  // in step order
    last = p[0].get<int>();
    if (p[0].get<int>() == 7777) {
      has_peak = true;
      EXPECT_EQ(p[1 + T].get<uint64_t>(), 900u);
    }
  }
  EXPECT_TRUE(has_peak);
  EXPECT_LT(html.size(), 1u << 20);
}

TEST_F(ReportTest, StrategiesPageHasOnePointPerRowAndTheTable) {
  std::vector<StrategyRow> rows = {
      {"greedy", 1u << 30, 900u << 20, 3.5, 2.0, true},
      {"greedy", 512u << 20, 600u << 20, 12.0, 2.5, false},
      {"sqrt <n>", 1u << 30, 800u << 20, 8.25, 10.0, true},
      {"sqrt <n>", 512u << 20, 500u << 20, 20.0, 11.0, true},
  };
  std::string path = Path("s.html");
  Status s = WriteStrategiesHtml("tiny<model>", rows, path);
  ASSERT_TRUE(s.ok()) << s.message();
  std::string html = Read(path);
  EXPECT_NE(html.find("<svg id=\"scatter\""), std::string::npos);
  EXPECT_EQ(Count(html, "<circle class=\"pt\""), 4u);
  auto table = TableRows(html, "strategies");
  ASSERT_EQ(table.size(), 4u);
  EXPECT_EQ(table[0], (std::vector<std::string>{"greedy", "1.00 GiB", "900.00 MiB", "3.50%",
                                                "2.0 ms", "yes"}));
  EXPECT_EQ(table[3][0], "sqrt &lt;n&gt;");
  EXPECT_EQ(table[1][5], "no");
  EXPECT_EQ(html.find("sqrt <n>"), std::string::npos);
  EXPECT_EQ(html.find("tiny<model>"), std::string::npos);
  // Two strategies, two colours; a plan that does not fit is hollow.
  std::string greedy = AttributeAfter(html, "data-strategy=\"greedy\"", "stroke");
  std::string sqrt = AttributeAfter(html, "data-strategy=\"sqrt &lt;n&gt;\"", "stroke");
  EXPECT_EQ(greedy.size(), 7u);
  EXPECT_EQ(sqrt.size(), 7u);
  EXPECT_NE(greedy, sqrt);
  EXPECT_EQ(Count(html, "fill=\"#fff\"><title>greedy: budget 512.00 MiB"), 1u);
}

TEST_F(ReportTest, ErrorsAreStatuses) {
  std::string bad = Path("no/such/dir/out.json");
  Status s = WriteChromeTrace(in_, bad);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(bad), std::string::npos) << s.message();
  s = WriteHtmlReport(in_, Path("no/such/dir/out.html"));
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cannot open"), std::string::npos) << s.message();
  EXPECT_FALSE(WriteStrategiesHtml("m", {}, Path("no/such/dir/s.html")).ok());

  ReportInput none = in_;
  none.trace = nullptr;
  EXPECT_FALSE(WriteChromeTrace(none, Path("x.json")).ok());
  EXPECT_FALSE(WriteHtmlReport(none, Path("x.html")).ok());

  Trace broken = trace_;
  broken.events.push_back({Kind::kFree, 42, 6});
  ReportInput in = in_;
  in.trace = &broken;
  in.peak = nullptr;
  s = WriteChromeTrace(in, Path("x.json"));
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("buffer 42"), std::string::npos) << s.message();
  broken.events.back() = {Kind::kFree, 0, 6};
  broken.events.push_back({Kind::kFree, 0, 6});
  s = WriteHtmlReport(in, Path("x.html"));
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not live"), std::string::npos) << s.message();
}

TEST_F(ReportTest, AnEmptyTraceStillMakesValidReports) {
  Trace empty;
  PeakReport peak = FindPeak(empty);
  in_.trace = &empty;
  in_.peak = &peak;
  json j = TraceJson();
  size_t slices = 0;
  for (const json& e : j["traceEvents"]) slices += e["ph"] == "X";
  EXPECT_EQ(slices, 0u);
  std::string html = Html();
  EXPECT_NE(html.find("<table id=\"tensors\""), std::string::npos);
  EXPECT_TRUE(TableRows(html, "tensors").empty());
}

}  // namespace
}  // namespace vramsim
