// The built `vramsim` binary end to end: a real export prints parseable JSON; every kind of bad
// input exits with status 2 and exactly one `vramsim: error:` line on stderr.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/model_builder.h"

using vramsim::DType;
using vramsim::testing::ModelBuilder;
using vramsim::testing::TempDir;

namespace {

const std::string kBin = VRAMSIM_BIN;
const std::string kExamples = VRAMSIM_EXAMPLES;
const std::string kResnet = kExamples + "/resnet18.onnx";

std::string Quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') {
      q += "'\\''";
    } else {
      q += c;
    }
  }
  return q + "'";
}

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct CliRun {
  int status = -1;  // exit status; 128 + signal when killed by one
  std::string out, err;
};

CliRun RunCli(const std::vector<std::string>& args) {
  TempDir dir;
  std::string out = dir.File("stdout"), err = dir.File("stderr");
  std::string cmd = Quote(kBin);
  for (const auto& a : args) {
    cmd += ' ';
    cmd += Quote(a);
  }
  cmd += " >";
  cmd += Quote(out);
  cmd += " 2>";
  cmd += Quote(err);
  int rc = std::system(cmd.c_str());
  CliRun r;
  if (rc != -1 && WIFEXITED(rc)) {
    r.status = WEXITSTATUS(rc);
  } else if (rc != -1 && WIFSIGNALED(rc)) {
    r.status = 128 + WTERMSIG(rc);
  }
  r.out = Slurp(out);
  r.err = Slurp(err);
  return r;
}

std::string Describe(const std::vector<std::string>& args) {
  std::string s = "vramsim";
  for (const auto& a : args) {
    s += ' ';
    s += a;
  }
  return s;
}

// Exit status exactly 2 and stderr exactly one line starting with "vramsim: error:".
void ExpectCliError(const std::vector<std::string>& args, const std::string& mentions = "") {
  CliRun r = RunCli(args);
  SCOPED_TRACE(Describe(args));
  EXPECT_EQ(r.status, 2) << "stderr: " << r.err << "stdout: " << r.out.substr(0, 400);
  EXPECT_EQ(r.err.rfind("vramsim: error:", 0), 0u) << "stderr: " << r.err;
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.back(), '\n') << "stderr: " << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "stderr: " << r.err;
  if (!mentions.empty()) {
    EXPECT_NE(r.err.find(mentions), std::string::npos) << "stderr: " << r.err;
  }
}

TEST(Cli, InspectResnet18Json) {
  CliRun r = RunCli({"inspect", kResnet, "--dim", "batch=8", "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << r.out.substr(0, 200);
  ASSERT_TRUE(j["outputs"].is_array());
  ASSERT_FALSE(j["outputs"].empty());
  EXPECT_EQ(j["outputs"][0]["shape"], nlohmann::json({8, 1000}));
  EXPECT_EQ(j["inputs"][0]["shape"], nlohmann::json({8, 3, 224, 224}));
  // 8*3*224*224 floats = 1204224 * 4 bytes.
  EXPECT_EQ(j["inputs"][0]["bytes"], 4816896);
  EXPECT_EQ(j["dims"]["batch"], 8);
}

TEST(Cli, InspectResnet18Text) {
  CliRun r = RunCli({"inspect", kResnet, "--dim", "batch=2"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  EXPECT_NE(r.out.find("[2, 1000]"), std::string::npos) << r.out;
}

TEST(Cli, GarbageFile) {
  TempDir dir;
  std::mt19937 rng(7);
  std::string bytes;
  for (int i = 0; i < 4096; ++i) bytes.push_back(static_cast<char>(rng() & 0xFF));
  ExpectCliError({"inspect", dir.Write("garbage.onnx", bytes), "--dim", "batch=1"});
}

TEST(Cli, TruncatedFile) {
  std::string bytes = Slurp(kResnet);
  ASSERT_GT(bytes.size(), 1000u);
  TempDir dir;
  for (size_t cut : {size_t{1}, size_t{100}, bytes.size() / 2, bytes.size() - 1}) {
    ExpectCliError({"inspect", dir.Write("cut.onnx", bytes.substr(0, cut)), "--dim", "batch=1"});
  }
}

TEST(Cli, EmptyFile) {
  TempDir dir;
  ExpectCliError({"inspect", dir.Write("empty.onnx", ""), "--dim", "batch=1"}, "empty");
}

TEST(Cli, MissingFile) {
  TempDir dir;
  ExpectCliError({"inspect", dir.File("missing.onnx"), "--dim", "batch=1"});
}

TEST(Cli, DirectoryAsModel) {
  TempDir dir;
  ExpectCliError({"inspect", dir.path().string(), "--dim", "batch=1"});
}

TEST(Cli, UnboundDim) { ExpectCliError({"inspect", kResnet}, "batch"); }

TEST(Cli, NegativeDim) { ExpectCliError({"inspect", kResnet, "--dim", "batch=-1"}, "batch"); }

TEST(Cli, NonIntegerDim) {
  ExpectCliError({"inspect", kResnet, "--dim", "batch=abc"}, "abc");
  ExpectCliError({"inspect", kResnet, "--dim", "batch=8x"}, "8x");
  ExpectCliError({"inspect", kResnet, "--dim", "batch="});
}

TEST(Cli, DimWithoutEquals) {
  ExpectCliError({"inspect", kResnet, "--dim", "nonsense"}, "nonsense");
}

TEST(Cli, DimGivenTwice) {
  ExpectCliError({"inspect", kResnet, "--dim", "batch=1", "--dim", "batch=2"}, "batch");
}

TEST(Cli, UnknownFlag) { ExpectCliError({"inspect", kResnet, "--dim", "batch=1", "--bogus"}); }

TEST(Cli, NoSubcommand) {
  // One error line, and the usage a new user needs on stdout.
  ExpectCliError({}, "a subcommand is required");
  CliRun r = RunCli({});
  for (const char* sub :
       {"inspect", "estimate", "fit", "max-batch", "plan", "strategies", "compare"}) {
    EXPECT_NE(r.out.find(sub), std::string::npos) << sub << " missing from: " << r.out;
  }
}

TEST(Cli, UnknownSubcommand) { ExpectCliError({"frobnicate", kResnet}); }

TEST(Cli, NoModel) { ExpectCliError({"inspect"}); }

TEST(Cli, DimsOverflowing) {
  // Not a 64-bit integer at all.
  ExpectCliError({"inspect", kResnet, "--dim", "batch=99999999999999999999"}, "batch");
  // A 64-bit integer whose tensors' byte counts overflow: 2^63-1 * 3*224*224 * 4 (the importer
  // refuses the dimension or the bytes; either way one line naming the dim).
  ExpectCliError({"inspect", kResnet, "--dim", "batch=9223372036854775807"}, "batch");
}

// Each of four float parameters has 2^60 elements = 2^62 bytes, which fits 64 bits; together
// they are 2^64 bytes, which does not. A total that wraps to 0 is a wrong answer, not a
// result: the CLI must report the overflow.
TEST(Cli, TotalBytesOverflowing) {
  ModelBuilder m(13);
  m.Input("x", DType::kFloat32, {4});
  for (int i = 0; i < 4; ++i) {
    std::string name = "w";
    name += std::to_string(i);
    m.Initializer(name, DType::kFloat32, {int64_t{1} << 60});
  }
  m.Node("Relu", {"x"}, {"y"});
  m.Output("y");
  TempDir dir;
  std::string path = dir.Write("huge_params.onnx", m);
  ExpectCliError({"inspect", path, "--json"}, "w0");
  ExpectCliError({"inspect", path}, "w0");
}

// A model whose shape arithmetic divides INT64_MIN by -1: an answer or an error, never a signal.
TEST(Cli, HostileShapeArithmeticDoesNotKillTheProcess) {
  ModelBuilder m(13);
  m.Int64Initializer("a", {1}, {INT64_MIN});
  m.Int64Initializer("b", {1}, {-1});
  m.Input("x", DType::kFloat32, {3});
  m.Node("Div", {"a", "b"}, {"q"}, "/Div");
  m.Node("Relu", {"x"}, {"y"});
  m.Output("y");
  m.Output("q", DType::kInt64);
  TempDir dir;
  CliRun r = RunCli({"inspect", dir.Write("div.onnx", m)});
  EXPECT_TRUE(r.status == 0 || r.status == 2) << "status " << r.status << ", stderr: " << r.err;
}

// ---- issue 12: every flag validated, never a silent wrong answer ----------------------------

const std::string kGpt = kExamples + "/gpt.onnx";

// A dimension bound to 0, or beyond 64 bits, is refused by the --dim parser for every
// subcommand, naming the flag.
TEST(Cli, ZeroDimIsRefusedNamingTheFlag) {
  const std::string zero = "--dim batch=0: dimensions must be at least 1";
  ExpectCliError({"inspect", kResnet, "--dim", "batch=0"}, zero);
  ExpectCliError({"estimate", kGpt, "--dim", "batch=0", "--dim", "seq=8"}, zero);
  ExpectCliError({"estimate", kGpt, "--dim", "batch=2", "--dim", "seq=0"},
                 "--dim seq=0: dimensions must be at least 1");
  ExpectCliError({"fit", kGpt, "--gpu", "t4", "--dim", "batch=0", "--dim", "seq=8"}, zero);
  ExpectCliError({"plan", kGpt, "--budget", "1GiB", "--dim", "batch=0", "--dim", "seq=8"}, zero);
  ExpectCliError({"estimate", kGpt, "--dim", "batch=-0", "--dim", "seq=8"}, "at least 1");
  // The CLI's range is the importer's (one line, the same bound for every subcommand).
  ExpectCliError({"estimate", kGpt, "--dim", "batch=99999999999999999999", "--dim", "seq=8"},
                 "from 1 to 2^48");
  ExpectCliError({"estimate", kGpt, "--dim", "batch=281474976710657", "--dim", "seq=8"},
                 "--dim batch=281474976710657: dimensions must be from 1 to 2^48");
  ExpectCliError({"inspect", kResnet, "--dim", "batch=9223372036854775807"}, "2^48");
  ExpectCliError({"estimate", kGpt, "--dim", "batch=-99999999999999999999", "--dim", "seq=8"},
                 "at least 1");
  ExpectCliError({"estimate", kGpt, "--dim", "batch= 8", "--dim", "seq=8"}, "not an integer");
}

// The micro-batch (2^48 / 2^30 = 2^18 images) imports fine, but the whole batch kept resident
// (2^48 images of 3x224x224 floats, about 2^67 bytes) does not fit 64 bits: refused, not
// wrapped to a small number.
TEST(Cli, AccumulatedBatchBytesOverflowAreRefused) {
  ExpectCliError({"estimate", kResnet, "--dim", "batch=281474976710656", "--accum", "1073741824"},
                 "overflow");
}

TEST(Cli, AccumFlag) {
  for (const char* bad : {"0", "-3", "1073741825", "2147483647"}) {
    ExpectCliError({"estimate", kGpt, "--dim", "batch=8", "--dim", "seq=8", "--accum", bad},
                   "--accum must be between 1 and 1073741824");
  }
  for (const char* bad : {"nan", "1.5", "99999999999999999999", "inf"}) {
    ExpectCliError({"estimate", kGpt, "--dim", "batch=8", "--dim", "seq=8", "--accum", bad},
                   "--accum");
  }
}

TEST(Cli, BudgetFlags) {
  const std::vector<std::string> base = {"plan", kGpt, "--dim", "batch=2", "--dim", "seq=8"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  // Over 2^63 bytes: llround's range; it used to wrap to a wrong budget.
  ExpectCliError(with({"--budget", "10000000000000000000"}), "too large");
  ExpectCliError(with({"--budget", "9EiB"}), "--budget");
  ExpectCliError(with({"--budget", "10000000TiB"}), "too large");
  for (const char* bad : {"nan", "inf", "-5", "0", "1e3", "", "GiB", "1.5.5GiB", "0.1"}) {
    ExpectCliError(with({"--budget", bad}), "--budget");
  }
  // --budget-fraction: its range, as --help prints it.
  CliRun help = RunCli({"plan", "--help"});
  EXPECT_NE(help.out.find("in (0, 100]"), std::string::npos) << help.out;
  for (const char* bad : {"nan", "inf", "-inf", "-1", "0", "100.5", "1e10"}) {
    ExpectCliError(with({"--budget-fraction", bad}), "--budget-fraction must be in (0, 100]");
  }
  ExpectCliError(with({"--budget", "1GiB", "--budget-fraction", "0.5"}), "not both");
}

TEST(Cli, TimeLimitFlag) {
  CliRun help = RunCli({"plan", "--help"});
  EXPECT_NE(help.out.find("in (0, 1e6]"), std::string::npos) << help.out;
  for (const char* bad : {"nan", "inf", "0", "-1", "1e7", "-nan"}) {
    ExpectCliError({"plan", kGpt, "--dim", "batch=2", "--dim", "seq=8", "--budget", "1GiB",
                    "--time-limit", bad},
                   "--time-limit must be a number of seconds in (0, 1e6]");
    ExpectCliError({"strategies", kGpt, "--dim", "batch=2", "--dim", "seq=8", "--budgets", "1GiB",
                    "--time-limit", bad},
                   "--time-limit");
  }
}

TEST(Cli, GpuParallelismAndTopFlags) {
  const std::vector<std::string> fit = {"fit", kGpt, "--dim", "batch=2", "--dim", "seq=8"};
  auto with = [](std::vector<std::string> a, std::vector<std::string> extra) {
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  // An unknown GPU lists the known ones.
  ExpectCliError(with(fit, {"--gpu", "v100"}), "h200");
  ExpectCliError(with(fit, {"--gpu", ""}), "--gpu");
  ExpectCliError(with(fit, {"--gpu", "t4", "--gpu-memory", "-1"}), "--gpu-memory");
  ExpectCliError(with(fit, {"--gpu", "t4", "--gpu-memory", "99999999999999999999"}));
  ExpectCliError(with(fit, {"--gpu", "t4", "--gpu-memory", "nan"}));
  const std::vector<std::string> est = {"estimate", kGpt, "--dim", "batch=2", "--dim", "seq=8"};
  for (const char* bad : {"0", "-1", "1048577", "99999999999", "nan"}) {
    ExpectCliError(with(est, {"--data-parallel", bad}), "--data-parallel");
  }
  for (const char* bad : {"-1", "4", "nan", "1.5"}) {
    ExpectCliError(with(est, {"--data-parallel", "4", "--zero", bad}), "--zero");
  }
  ExpectCliError(with(est, {"--zero", "2"}), "--data-parallel");
  for (const char* bad : {"-1", "1048577", "nan", "99999999999999999999"}) {
    ExpectCliError(with(est, {"--top", bad}), "--top");
  }
}

// PyTorch's backward() raises when no parameter feeds the loss; so must we.
TEST(Cli, NothingToTrainIsRefused) {
  TempDir dir;
  ModelBuilder none(17);
  none.Input("x", DType::kFloat32, {"batch", 8});
  none.Node("Relu", {"x"}, {"y"}, "/act/Relu");
  none.Output("y");
  ExpectCliError({"estimate", dir.Write("none.onnx", none), "--dim", "batch=2", "--loss", "mse"},
                 "no trainable parameters");

  // A parameter, but the first output (the one the loss reads) does not use it.
  ModelBuilder unused(17);
  unused.Input("x", DType::kFloat32, {"batch", 8});
  unused.Initializer("fc.weight", DType::kFloat32, {8, 8});
  unused.Node("Relu", {"x"}, {"y"}, "/act/Relu");
  unused.Node("MatMul", {"x", "fc.weight"}, {"z"}, "/fc/MatMul");
  unused.Output("y");
  unused.Output("z");
  std::string path = dir.Write("unused.onnx", unused);
  for (const char* loss : {"mse", "cross-entropy", "none"}) {
    ExpectCliError({"estimate", path, "--dim", "batch=2", "--loss", loss},
                   "the loss does not depend on any trainable parameter");
  }
  ExpectCliError({"plan", path, "--dim", "batch=2", "--budget", "1MiB", "--loss", "mse"},
                 "does not depend on any trainable parameter");
  // The same model with the loss on z trains.
  ModelBuilder used = unused;
  used.graph()->mutable_output()->SwapElements(0, 1);
  CliRun ok =
      RunCli({"estimate", dir.Write("used.onnx", used), "--dim", "batch=2", "--loss", "mse"});
  EXPECT_EQ(ok.status, 0) << ok.err;
}

// Every subcommand that imports an ONNX model takes --allow-constant-weights.
TEST(Cli, AllowConstantWeightsOnEverySubcommand) {
  for (const char* sub : {"inspect", "estimate", "fit", "max-batch", "plan", "strategies"}) {
    CliRun r = RunCli({sub, "--help"});
    EXPECT_EQ(r.status, 0) << sub;
    EXPECT_NE(r.out.find("--allow-constant-weights"), std::string::npos) << sub << "\n" << r.out;
  }
  CliRun r = RunCli({"estimate", kGpt, "--dim", "batch=2", "--dim", "seq=8",
                     "--allow-constant-weights", "--json"});
  EXPECT_EQ(r.status, 0) << r.err;
}

// --accum K costs two simulated micro-batches, whatever K; the report says so.
TEST(Cli, AccumulationCostDoesNotGrowWithK) {
  auto start = std::chrono::steady_clock::now();
  CliRun r = RunCli({"estimate", kGpt, "--dim", "batch=4096", "--dim", "seq=8", "--accum", "4096"});
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_LT(s, 4.0);  // 0.15 s; K = 4096 full passes took 7.6 s
  EXPECT_NE(r.out.find("micro-batches 2..4096 (identical in memory)"), std::string::npos) << r.out;
  CliRun j =
      RunCli({"estimate", kGpt, "--dim", "batch=64", "--dim", "seq=8", "--accum", "16", "--json"});
  ASSERT_EQ(j.status, 0) << j.err;
  auto json = nlohmann::json::parse(j.out);
  EXPECT_EQ(json["micro_batches"], 16);
  EXPECT_EQ(json["micro_batches_simulated"], 2);
}

// A remat graph that lies about itself: one line, exit 2.
TEST(Cli, HostileRematGraphs) {
  TempDir dir;
  const char* bad[] = {
      R"({"nodes": [{"id": 0, "cost_cpu": 1e300, "cost_ram": 1}], "links": []})",
      R"({"nodes": [{"id": 0, "cost_cpu": 1, "cost_ram": 1e30}], "links": []})",
      R"({"nodes": [{"id": 0, "cost_cpu": 1, "cost_ram": -5}], "links": []})",
      R"({"nodes": [{"id": 0, "cost_cpu": NaN, "cost_ram": 1}], "links": []})",
      R"({"nodes": [{"id": 1.5, "cost_cpu": 1, "cost_ram": 1}], "links": []})",
      R"({"nodes": {"id": 0}, "links": []})",
      R"({"nodes": [{"id": 0, "cost_cpu": 1, "cost_ram": 1}], "links": [{"source": 0}]})",
      R"({"nodes": [{"id": 0, "cost_cpu": 1, "cost_ram": 1}], "links": [{"source": 0, "target": 7}]})",
  };
  for (const char* text : bad) {
    ExpectCliError({"plan", dir.Write("g.json", text), "--budget", "1GiB"}, "g.json");
  }
}

}  // namespace

namespace {

TEST(CliSnapshot, APredictionComparedWithItselfShowsNoDifference) {
  TempDir dir;
  std::string pickle = dir.File("gpt.pickle");
  CliRun w = RunCli(
      {"estimate", kGpt, "--dim", "batch=2", "--dim", "seq=32", "--json", "--snapshot", pickle});
  ASSERT_EQ(w.status, 0) << w.err;
  nlohmann::json e = nlohmann::json::parse(w.out);
  CliRun c = RunCli({"compare", pickle, kGpt, "--dim", "batch=2", "--dim", "seq=32", "--json"});
  ASSERT_EQ(c.status, 0) << c.err;
  nlohmann::json j = nlohmann::json::parse(c.out);
  EXPECT_EQ(j["real"]["peak_allocated_bytes"], j["predicted"]["peak_allocated_bytes"]);
  EXPECT_EQ(j["real"]["peak_reserved_bytes"], j["predicted"]["peak_reserved_bytes"]);
  // The snapshot's peak of requests rounded to 512 B is estimate's peak.
  EXPECT_EQ(j["real"]["peak_allocated_bytes"], e["peak_bytes"]);
  EXPECT_TRUE(j["divergence"].is_null());
  EXPECT_TRUE(j["first_size_mismatch"].is_null());
  EXPECT_EQ(j["at_peak"]["real_unmatched"], 0);
  // A different step (a longer sequence) is told apart.
  CliRun d = RunCli({"compare", pickle, kGpt, "--dim", "batch=2", "--dim", "seq=64", "--json"});
  ASSERT_EQ(d.status, 0) << d.err;
  EXPECT_FALSE(nlohmann::json::parse(d.out)["divergence"].is_null());
}

TEST(CliSnapshot, BadSnapshotsAndTargetsAreOneLine) {
  TempDir dir;
  ExpectCliError({"compare", dir.Write("x.pickle", "not a pickle"), kGpt, "--dim", "batch=2",
                  "--dim", "seq=8"},
                 "x.pickle");
  ExpectCliError({"compare", dir.File("absent.pickle"), kGpt, "--dim", "batch=2", "--dim", "seq=8"},
                 "absent.pickle");
  ExpectCliError({"estimate", kGpt, "--dim", "batch=2", "--dim", "seq=8", "--target", "torch-cpu",
                  "--snapshot", dir.File("cpu.pickle")},
                 "torch-cuda");
}

TEST(CliEstimateJson, ModulesAtThePeakAddUpToIt) {
  CliRun r = RunCli({"estimate", kGpt, "--dim", "batch=2", "--dim", "seq=32", "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  uint64_t sum = 0, tensors = 0;
  std::set<std::string> names;
  for (const auto& m : j["by_module_at_peak"]) {
    uint64_t cats = 0;
    for (const auto& [k, v] : m["by_category"].items()) cats += v.get<uint64_t>();
    EXPECT_EQ(cats, m["bytes"].get<uint64_t>()) << m.dump();
    sum += m["bytes"].get<uint64_t>();
    tensors += m["tensors"].get<uint64_t>();
    names.insert(m["module"].get<std::string>());
  }
  EXPECT_EQ(sum, j["peak_bytes"].get<uint64_t>());
  EXPECT_EQ(tensors, j["live_tensors_at_peak"].get<uint64_t>());
  // The first block's MLP weight and its Adam moments count under h.0.mlp.c_fc.
  EXPECT_TRUE(names.count("h.0.mlp.c_fc"));
}

TEST(CliPeakWording, ThePhaseIsSaidOnce) {
  CliRun r = RunCli({"estimate", kGpt, "--dim", "batch=2", "--dim", "seq=32"});
  ASSERT_EQ(r.status, 0) << r.err;
  size_t at = r.out.find("\nat: ");
  ASSERT_NE(at, std::string::npos) << r.out;
  std::string line = r.out.substr(at + 1, r.out.find('\n', at + 1) - at - 1);
  auto count = [&](const std::string& word) {
    size_t n = 0;
    for (size_t p = line.find(word); p != std::string::npos; p = line.find(word, p + 1)) ++n;
    return n;
  };
  EXPECT_LE(count("backward"), 1u) << line;
  EXPECT_LE(count("optimizer"), 1u) << line;
}

}  // namespace
