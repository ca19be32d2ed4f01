// The built `vramsim` binary end to end: a real export prints parseable JSON; every kind of bad
// input exits with status 2 and exactly one `vramsim: error:` line on stderr.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
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

TEST(Cli, NoSubcommand) { ExpectCliError({}); }

TEST(Cli, UnknownSubcommand) { ExpectCliError({"frobnicate", kResnet}); }

TEST(Cli, NoModel) { ExpectCliError({"inspect"}); }

TEST(Cli, DimsOverflowing) {
  // Not a 64-bit integer at all.
  ExpectCliError({"inspect", kResnet, "--dim", "batch=99999999999999999999"}, "batch");
  // A 64-bit integer whose tensors' byte counts overflow: 2^63-1 * 3*224*224 * 4.
  ExpectCliError({"inspect", kResnet, "--dim", "batch=9223372036854775807"}, "overflow");
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
  ExpectCliError({"inspect", path, "--json"}, "overflow");
  ExpectCliError({"inspect", path}, "overflow");
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

}  // namespace
