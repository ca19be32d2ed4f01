// PyTorch memory snapshots (reports/memory_snapshot.h, reports/memory_snapshot_compare.h).
// Expected bytes come from Python's pickle (quoted), expected figures are worked out by hand
// in the comments from the allocator rules (512 B blocks, 2 MiB small-pool segments, 20 MiB
// for 1-10 MiB requests, larger ones rounded to 2 MiB, large-pool remainders split only above
// 1 MiB).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "reports/memory_snapshot.h"
#include "reports/memory_snapshot_compare.h"
#include "simulator/allocator.h"

namespace vramsim {
namespace {

constexpr uint64_t KiB = 1024;
constexpr uint64_t MiB = 1024 * 1024;
constexpr uint64_t kBase = uint64_t{1} << 40;  // the allocator model's first address

std::string Hex(std::string_view s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += d[c >> 4];
    out += d[c & 15];
  }
  return out;
}

std::string Unhex(std::string_view h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) {
    out += static_cast<char>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16));
  }
  return out;
}

std::string Error(std::string_view bytes, const PickleLimits& limits = {}) {
  auto doc = ParsePickle(bytes, limits);
  return doc ? std::string("(parsed)") : doc.error().message;
}

// ---- pickle writer and reader --------------------------------------------------------------

// Each integer alone (PROTO 4, the opcode, STOP); the opcode bytes are Python's own:
// pickle.dumps([255, 256, 65535, 65536, -1, 2**31-1, 2**31, -2**31, -2**31-1, 2**63-1,
// -2**63], protocol=2).hex() gives 4bff 4d0001 4dffff 4a00000100 4affffffff 4affffff7f
// 8a050000008000 4a00000080 8a05ffffff7fff 8a08ffffffffffffff7f 8a080000000000000080.
TEST(Pickle, IntegersAtByteBoundariesAsPythonWritesThem) {
  struct Case {
    int64_t v;
    const char* hex;
  };
  const Case cases[] = {
      {0, "4b00"},
      {255, "4bff"},
      {256, "4d0001"},
      {65535, "4dffff"},
      {65536, "4a00000100"},
      {-1, "4affffffff"},
      {2147483647, "4affffff7f"},
      {2147483648, "8a050000008000"},
      {-2147483648LL, "4a00000080"},
      {-2147483649LL, "8a05ffffff7fff"},
      {std::numeric_limits<int64_t>::max(), "8a08ffffffffffffff7f"},
      {std::numeric_limits<int64_t>::min(), "8a080000000000000080"},
      {int64_t{1} << 40, "8a06000000000001"},  // an address of the model: 6 bytes
  };
  for (const Case& c : cases) {
    std::ostringstream out;
    PickleWriter w(out);
    w.Int(c.v);
    ASSERT_TRUE(w.Finish());
    EXPECT_EQ(Hex(out.str()), std::string("8004") + c.hex + "2e") << c.v;
    auto doc = ParsePickle(out.str());
    ASSERT_TRUE(doc.ok()) << doc.error().message;
    EXPECT_EQ(doc->root().as_int(), c.v);
  }
}

TEST(Pickle, UnsignedValuesOverInt64MaxAreRefusedNotWrapped) {
  std::ostringstream out;
  PickleWriter w(out);
  w.BeginList();
  EXPECT_TRUE(w.UInt(uint64_t{std::numeric_limits<int64_t>::max()}));
  EXPECT_FALSE(w.UInt(uint64_t{1} << 63));
  EXPECT_FALSE(w.UInt(std::numeric_limits<uint64_t>::max()));
  w.EndList();
  ASSERT_TRUE(w.Finish());
  auto doc = ParsePickle(out.str());
  ASSERT_TRUE(doc.ok()) << doc.error().message;
  ASSERT_EQ(doc->root().size(), 1u);  // the refused values wrote nothing
  EXPECT_EQ(doc->root().at(0).as_int(), std::numeric_limits<int64_t>::max());
}

TEST(Pickle, ReaderRefusesIntegersOfMoreThanEightBytes) {
  // pickle.dumps(2**63, protocol=2): LONG1 of 9 bytes.
  EXPECT_NE(Error(Unhex("80028a09000000000000008000"
                        "2e"))
                .find("integer of 9 bytes"),
            std::string::npos);
  // LONG4 with 16 bytes.
  std::string long4 = Unhex("80028b10000000") + std::string(16, '\x01') + ".";
  EXPECT_NE(Error(long4).find("16 bytes"), std::string::npos);
  // 8 bytes whose top bit is set are negative, as in Python.
  auto doc = ParsePickle(Unhex("80028a08feffffffffffffff2e"));
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ(doc->root().as_int(), -2);
  // LONG1 of 0 bytes is 0 (pickle.loads(b'\x80\x02\x8a\x00.') == 0).
  doc = ParsePickle(Unhex("80028a002e"));
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ(doc->root().as_int(), 0);
}

TEST(Pickle, ContainersAndScalarsRoundTrip) {
  std::ostringstream out;
  PickleWriter w(out);
  w.BeginDict();
  w.Str("list");
  w.BeginList();
  for (int i = 0; i < 2500; ++i) w.Int(i * 7);  // two APPENDS batches of 1000 and one of 500
  w.EndList();
  w.Str("dict");
  w.BeginDict();
  for (int i = 0; i < 1001; ++i) {                      // one SETITEMS of 1000 pairs, one of 1
    w.Str(std::string("k").append(std::to_string(i)));  // not "k" + ...: GCC 12 -Wrestrict
    w.Int(-i);
  }
  w.EndDict();
  w.Str("empty");
  w.BeginList();
  w.EndList();
  w.Str("scalars");
  w.BeginList();
  w.None();
  w.Bool(true);
  w.Bool(false);
  w.Float(1.5);
  w.Float(-0.0);
  w.Str("\xc3\xa9t\xc3\xa9");    // "été"
  w.Str(std::string(300, 'x'));  // BINUNICODE (over 255 bytes)
  w.EndList();
  w.EndDict();
  ASSERT_TRUE(w.Finish());
  EXPECT_EQ(w.bytes(), out.str().size());

  auto doc = ParsePickle(out.str());
  ASSERT_TRUE(doc.ok()) << doc.error().message;
  PickleRef root = doc->root();
  ASSERT_TRUE(root.is(PickleKind::kDict));
  EXPECT_EQ(root.size(), 4u);
  PickleRef list = root.get("list");
  ASSERT_EQ(list.size(), 2500u);
  EXPECT_EQ(list.at(0).as_int(), 0);
  EXPECT_EQ(list.at(999).as_int(), 6993);
  EXPECT_EQ(list.at(1000).as_int(), 7000);
  EXPECT_EQ(list.at(2499).as_int(), 17493);
  EXPECT_FALSE(list.at(2500).valid());
  PickleRef dict = root.get("dict");
  ASSERT_EQ(dict.size(), 1001u);
  EXPECT_EQ(dict.get("k0").as_int(), 0);
  EXPECT_EQ(dict.get("k1000").as_int(), -1000);
  EXPECT_EQ(dict.key(1).str(), "k1");
  EXPECT_FALSE(dict.get("k1001").valid());
  EXPECT_TRUE(root.get("empty").is(PickleKind::kList));
  EXPECT_EQ(root.get("empty").size(), 0u);
  PickleRef s = root.get("scalars");
  ASSERT_EQ(s.size(), 7u);
  EXPECT_TRUE(s.at(0).is(PickleKind::kNone));
  EXPECT_EQ(s.at(1).as_bool(), true);
  EXPECT_EQ(s.at(2).as_bool(), false);
  EXPECT_EQ(s.at(3).as_number(), 1.5);
  EXPECT_TRUE(std::signbit(*s.at(4).as_number()));
  EXPECT_EQ(s.at(5).str(), "\xc3\xa9t\xc3\xa9");
  EXPECT_EQ(s.at(6).str(), std::string(300, 'x'));
}

TEST(Pickle, InvalidUtf8IsEscapedWhenWrittenAndRefusedWhenRead) {
  std::ostringstream out;
  PickleWriter w(out);
  w.Str(
      "a\xff"
      "b");
  ASSERT_TRUE(w.Finish());
  auto doc = ParsePickle(out.str());
  ASSERT_TRUE(doc.ok()) << doc.error().message;
  EXPECT_EQ(doc->root().str(), "a\\xffb");
  // SHORT_BINUNICODE of the 3 bytes 61 ff 62.
  EXPECT_NE(Error(Unhex("80048c0361ff622e")).find("not valid UTF-8"), std::string::npos);
}

// pickle.dumps({'a': (1, 2), 'b': [True, None, 1.5], 'c': 'é'}, protocol=P).hex()
TEST(Pickle, ReadsWhatPythonWrites) {
  const char* p2 =
      "80027d71002858010000006171014b014b0286710258010000006271035d710428884e473ff8000000000000"
      "6558010000006371055802000000c3a97106752e";
  const char* p4 =
      "8004952b000000000000007d94288c0161944b014b0286948c0162945d9428884e473ff8000000000000658c"
      "0163948c02c3a994752e";
  for (const char* hex : {p2, p4}) {
    auto doc = ParsePickle(Unhex(hex));
    ASSERT_TRUE(doc.ok()) << doc.error().message;
    PickleRef r = doc->root();
    ASSERT_TRUE(r.is(PickleKind::kDict));
    PickleRef a = r.get("a");
    ASSERT_TRUE(a.is(PickleKind::kTuple));
    EXPECT_EQ(a.size(), 2u);
    EXPECT_EQ(a.at(1).as_int(), 2);
    PickleRef b = r.get("b");
    ASSERT_TRUE(b.is(PickleKind::kList));
    EXPECT_EQ(b.at(0).as_bool(), true);
    EXPECT_TRUE(b.at(1).is(PickleKind::kNone));
    EXPECT_EQ(b.at(2).as_number(), 1.5);
    EXPECT_EQ(r.get("c").str(), "\xc3\xa9");
  }
}

TEST(Pickle, RefusesOpcodesThatRunCode) {
  // pickle.dumps(os.system) would be GLOBAL 'posix system'; a payload REDUCEs it.
  std::string global = Unhex("8002") + "cposix\nsystem\n" + Unhex("8c026964") + Unhex("8552") + ".";
  std::string e = Error(global);
  EXPECT_NE(e.find("GLOBAL"), std::string::npos) << e;
  EXPECT_NE(e.find("offset 2"), std::string::npos) << e;
  EXPECT_NE(e.find("only plain data"), std::string::npos) << e;
  // STACK_GLOBAL (protocol 4): 'os' 'system' then 0x93.
  e = Error(Unhex("80048c026f738c0673797374656d932e"));
  EXPECT_NE(e.find("STACK_GLOBAL"), std::string::npos) << e;
  // REDUCE on None and an empty tuple: refused before anything is called.
  e = Error(Unhex("80024e29522e"));
  EXPECT_NE(e.find("REDUCE"), std::string::npos) << e;
  EXPECT_NE(e.find("offset 4"), std::string::npos) << e;
  EXPECT_NE(Error(Unhex("80027d7d622e")).find("BUILD"), std::string::npos);
  EXPECT_NE(Error(Unhex("80024e29812e")).find("NEWOBJ"), std::string::npos);
  EXPECT_NE(Error(Unhex("8002820100")).find("EXT"), std::string::npos);
  EXPECT_NE(Error(Unhex("80024e512e")).find("PERSID"), std::string::npos);
  EXPECT_NE(Error(std::string("(i__main__\nX\n.")).find("INST"), std::string::npos);
}

TEST(Pickle, RefusesTruncatedInputAtEveryLength) {
  const std::string full = Unhex(
      "80027d71002858010000006171014b014b0286710258010000006271035d710428884e473ff8000000000000"
      "6558010000006371055802000000c3a97106752e");
  ASSERT_TRUE(ParsePickle(full).ok());
  for (size_t n = 0; n < full.size(); ++n) {
    std::string e = Error(full.substr(0, n));
    EXPECT_NE(e.find("truncated"), std::string::npos) << n << ": " << e;
  }
  // A frame that claims more bytes than there are.
  EXPECT_NE(Error(Unhex("800495ff00000000000000")).find("frame longer"), std::string::npos);
}

TEST(Pickle, RefusesDeepNestingAndCycles) {
  auto nested = [](int depth) {
    // depth EMPTY_LISTs, then APPENDs nest each into the one below.
    return Unhex("8002") + std::string(depth, ']') + std::string(depth - 1, 'a') + ".";
  };
  EXPECT_TRUE(ParsePickle(nested(50)).ok());
  std::string e = Error(nested(150));
  EXPECT_NE(e.find("nested deeper than 100"), std::string::npos) << e;
  PickleLimits tight;
  tight.max_depth = 10;
  EXPECT_NE(Error(nested(11), tight).find("deeper than 10"), std::string::npos);
  EXPECT_TRUE(ParsePickle(nested(10), tight).ok());

  // l = []; l.append(l): EMPTY_LIST, BINPUT 0, BINGET 0, APPEND.
  e = Error(Unhex("80025d71006800612e"));
  EXPECT_NE(e.find("contains itself"), std::string::npos) << e;
  // d = {}; d[1] = d.
  e = Error(Unhex("80027d71004b016800732e"));
  EXPECT_NE(e.find("contains itself"), std::string::npos) << e;
  // A list shared twice is no cycle: [x, x] with x = [].
  auto shared = ParsePickle(Unhex("80025d285d71016801652e"));
  ASSERT_TRUE(shared.ok()) << shared.error().message;
  EXPECT_EQ(shared->root().size(), 2u);
}

TEST(Pickle, RefusesMalformedStacksAndLimits) {
  EXPECT_NE(Error(Unhex("8002612e")).find("underflow"), std::string::npos);  // APPEND on nothing
  EXPECT_NE(Error(Unhex("80024b01612e")).find("underflow"), std::string::npos);
  EXPECT_NE(Error(Unhex("80024b014b01612e")).find("not a list"), std::string::npos);
  EXPECT_NE(Error(Unhex("8002652e")).find("without MARK"), std::string::npos);
  EXPECT_NE(Error(Unhex("80026800")).find("never stored"), std::string::npos);
  EXPECT_NE(Error(Unhex("8006")).find("protocol 6"), std::string::npos);
  EXPECT_NE(Error(Unhex("80027d5d4b01732e")).find("unhashable"), std::string::npos);
  EXPECT_NE(Error(std::string("I1\n.")).find("protocol 0"), std::string::npos);
  PickleLimits few;
  few.max_values = 10;
  std::string list20 = Unhex("80025d28") + std::string(20, 'N') + "e.";
  EXPECT_NE(Error(list20, few).find("more than 10 values"), std::string::npos);
  PickleLimits small;
  small.max_input_bytes = 4;
  EXPECT_NE(Error(list20, small).find("over the limit"), std::string::npos);
}

// ---- snapshots of hand-built traces --------------------------------------------------------

class TraceBuilder {
 public:
  StepId Step(Phase phase, std::string op = "Op", std::string scope = "/") {
    trace_.steps.push_back({phase, op + std::to_string(trace_.steps.size()), op, scope, 0});
    return static_cast<StepId>(trace_.steps.size()) - 1;
  }
  BufferId Alloc(std::string name, uint64_t bytes, Category c = Category::kTransient) {
    trace_.buffers.push_back({name, bytes, c, DType::kFloat32, {}, "", ""});
    BufferId b = static_cast<BufferId>(trace_.buffers.size()) - 1;
    trace_.events.push_back({Event::Kind::kAlloc, b, Now()});
    return b;
  }
  void Free(BufferId b) { trace_.events.push_back({Event::Kind::kFree, b, Now()}); }
  const Trace& trace() const { return trace_; }

 private:
  StepId Now() const { return static_cast<StepId>(trace_.steps.size()) - 1; }
  Trace trace_;
};

// P 3000 B parameter; forward: A 1.5 MiB saved, B 700 B temporary (freed), W 21 MiB + w B
// saved (kept); backward: G 3000 B gradient, A freed; optimizer: T 24 MiB + 100 B state (kept).
Trace SmallTrace(uint64_t w_extra = 1000) {
  TraceBuilder t;
  t.Step(Phase::kSetup, "init");
  t.Alloc("P", 3000, Category::kParameters);
  t.Step(Phase::kForward, "MatMul", "/enc/");
  BufferId a = t.Alloc("A", 1536 * KiB, Category::kSavedActivations);
  BufferId b = t.Alloc("B", 700);
  t.Free(b);
  t.Step(Phase::kForward, "Relu", "/enc/");
  t.Alloc("W_act", 21 * MiB + w_extra, Category::kSavedActivations);
  t.Step(Phase::kBackward, "MatMul backward", "/enc/");
  t.Alloc("G", 3000, Category::kGradients);
  t.Free(a);
  t.Step(Phase::kOptimizer, "adam");
  t.Alloc("T", 24 * MiB + 100, Category::kOptimizerState);
  return t.trace();
}

struct Written {
  std::string bytes;
  MemorySnapshotSummary summary;
};

Written Write(const Trace& trace, bool warmup) {
  MemorySnapshotOptions o;
  o.replay.warmup_step = warmup;
  std::ostringstream out;
  auto s = WriteMemorySnapshot(trace, o, out);
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
  return {out.str(), s.ok() ? *s : MemorySnapshotSummary{}};
}

TEST(Snapshot, SegmentsAndBlocksOfASmallTrace) {
  Written w = Write(SmallTrace(), /*warmup=*/false);
  auto doc = ParsePickle(w.bytes);
  ASSERT_TRUE(doc.ok()) << doc.error().message;
  PickleRef root = doc->root();
  ASSERT_TRUE(root.is(PickleKind::kDict));
  PickleRef segs = root.get("segments");
  // S1 small 2 MiB at the base (P, B, G); L1 20 MiB for A (1-10 MiB request); W's 21 MiB +
  // 1024 (rounded) does not fit L1's 18.5 MiB rest: L2 of 22 MiB, the 1 MiB - 1024 rest too
  // small to split (large pool: more than 1 MiB); T 24 MiB + 512: L3 of 26 MiB, 2 MiB - 512
  // split off.
  ASSERT_EQ(segs.size(), 4u);
  struct Seg {
    uint64_t address, total;
    const char* type;
    std::vector<std::tuple<uint64_t, uint64_t, uint64_t, const char*>> blocks;  // size, req
  };
  const std::vector<Seg> want = {
      {kBase,
       2 * MiB,
       "small",
       {{kBase, 3072, 3000, "active_allocated"},
        {kBase + 3072, 3072, 3000, "active_allocated"},  // G took B's block back
        {kBase + 6144, 2 * MiB - 6144, 0, "inactive"}}},
      {kBase + 2 * MiB, 20 * MiB, "large", {{kBase + 2 * MiB, 20 * MiB, 0, "inactive"}}},
      {kBase + 22 * MiB,
       22 * MiB,
       "large",
       {{kBase + 22 * MiB, 22 * MiB, 21 * MiB + 1000, "active_allocated"}}},
      {kBase + 44 * MiB,
       26 * MiB,
       "large",
       {{kBase + 44 * MiB, 24 * MiB + 512, 24 * MiB + 100, "active_allocated"},
        {kBase + 68 * MiB + 512, 2 * MiB - 512, 0, "inactive"}}},
  };
  uint64_t reserved = 0, allocated = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    PickleRef s = segs.at(i);
    SCOPED_TRACE(i);
    EXPECT_EQ(s.get("device").as_int(), 0);
    EXPECT_EQ(s.get("address").as_int(), static_cast<int64_t>(want[i].address));
    EXPECT_EQ(s.get("total_size").as_int(), static_cast<int64_t>(want[i].total));
    EXPECT_EQ(s.get("segment_type").str(), want[i].type);
    EXPECT_EQ(s.get("is_expandable").as_bool(), false);
    PickleRef blocks = s.get("blocks");
    ASSERT_EQ(blocks.size(), want[i].blocks.size());
    uint64_t at = want[i].address, seg_alloc = 0, seg_req = 0;
    for (size_t k = 0; k < want[i].blocks.size(); ++k) {
      auto [addr, size, req, state] = want[i].blocks[k];
      PickleRef b = blocks.at(k);
      EXPECT_EQ(b.get("address").as_int(), static_cast<int64_t>(addr));
      EXPECT_EQ(static_cast<uint64_t>(*b.get("address").as_int()), at);  // tiles the segment
      EXPECT_EQ(b.get("size").as_int(), static_cast<int64_t>(size));
      EXPECT_EQ(b.get("requested_size").as_int(), static_cast<int64_t>(req));
      EXPECT_EQ(b.get("state").str(), state);
      EXPECT_EQ(size % 512, 0u);
      at += size;
      if (std::string_view(state) == "active_allocated") {
        seg_alloc += size;
        seg_req += req;
        EXPECT_GE(b.get("frames").size(), 3u);
      }
    }
    EXPECT_EQ(at, want[i].address + want[i].total);
    EXPECT_EQ(s.get("allocated_size").as_int(), static_cast<int64_t>(seg_alloc));
    EXPECT_EQ(s.get("requested_size").as_int(), static_cast<int64_t>(seg_req));
    reserved += want[i].total;
    allocated += seg_alloc;
  }
  EXPECT_EQ(reserved, 70 * MiB);
  EXPECT_EQ(allocated, 6144 + 46 * MiB + 512);
  EXPECT_EQ(w.summary.final_reserved, 70 * MiB);
  EXPECT_EQ(w.summary.final_allocated, 6144 + 46 * MiB + 512);
  EXPECT_EQ(w.summary.segments, 4u);
  EXPECT_FALSE(w.summary.warmup_applied);

  // The settings MemoryViz reads.
  PickleRef settings = root.get("allocator_settings");
  EXPECT_EQ(settings.get("max_split_size").as_int(), -1);
  EXPECT_EQ(settings.get("expandable_segments").as_bool(), false);
  EXPECT_EQ(settings.get("roundup_power2_divisions").size(), 16u);
}

TEST(Snapshot, DeviceTraceEntriesOfASmallTrace) {
  Written w = Write(SmallTrace(), false);
  auto doc = ParsePickle(w.bytes);
  ASSERT_TRUE(doc.ok()) << doc.error().message;
  PickleRef traces = doc->root().get("device_traces");
  ASSERT_EQ(traces.size(), 1u);
  PickleRef t = traces.at(0);
  struct E {
    const char* action;
    uint64_t addr, size;
    const char* category;  // "" when none
  };
  const std::vector<E> want = {
      {"segment_alloc", kBase, 2 * MiB, "unknown"},
      {"alloc", kBase, 3000, "parameter"},
      {"segment_alloc", kBase + 2 * MiB, 20 * MiB, "unknown"},
      {"alloc", kBase + 2 * MiB, 1536 * KiB, "activation"},
      {"alloc", kBase + 3072, 700, "temporary"},
      {"free_requested", kBase + 3072, 700, ""},
      {"free_completed", kBase + 3072, 700, ""},
      {"segment_alloc", kBase + 22 * MiB, 22 * MiB, "unknown"},
      {"alloc", kBase + 22 * MiB, 21 * MiB + 1000, "activation"},
      {"alloc", kBase + 3072, 3000, "gradient"},
      {"free_requested", kBase + 2 * MiB, 1536 * KiB, ""},
      {"free_completed", kBase + 2 * MiB, 1536 * KiB, ""},
      {"segment_alloc", kBase + 44 * MiB, 26 * MiB, "unknown"},
      {"alloc", kBase + 44 * MiB, 24 * MiB + 100, "optimizer_state"},
  };
  ASSERT_EQ(t.size(), want.size());
  EXPECT_EQ(w.summary.trace_entries, want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(i);
    PickleRef e = t.at(i);
    EXPECT_EQ(e.get("action").str(), want[i].action);
    EXPECT_EQ(e.get("addr").as_int(), static_cast<int64_t>(want[i].addr));
    EXPECT_EQ(e.get("size").as_int(), static_cast<int64_t>(want[i].size));
    EXPECT_EQ(e.get("stream").as_int(), 0);
    EXPECT_EQ(e.get("time_us").as_int(), static_cast<int64_t>(i));
    EXPECT_EQ(e.get("category").str(), want[i].category);
    EXPECT_EQ(e.get("category").valid(), *want[i].category != 0);
  }
  // W's frames: the tensor, the op that made it, the phase.
  PickleRef frames = t.at(8).get("frames");
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames.at(0).get("filename").str(), "W_act");
  EXPECT_EQ(frames.at(0).get("line").as_int(), 3);  // buffer id (P, A, B, W_act)
  EXPECT_EQ(frames.at(0).get("name").str(), "activation: saved_activations");
  EXPECT_EQ(frames.at(1).get("filename").str(), "/enc/");
  EXPECT_EQ(frames.at(1).get("line").as_int(), 2);  // step index
  EXPECT_EQ(frames.at(1).get("name").str(), "Relu Relu2");
  EXPECT_EQ(frames.at(2).get("name").str(), "forward");
}

// A replay of device_traces written here (not the library's reader): allocations of each
// request rounded to 512 B, at each alloc entry.
uint64_t ReplayRoundedPeak(PickleRef trace, uint64_t start) {
  std::map<int64_t, uint64_t> live;
  uint64_t cur = start, peak = start;
  for (size_t i = 0; i < trace.size(); ++i) {
    PickleRef e = trace.at(i);
    std::string_view a = e.get("action").str();
    int64_t addr = *e.get("addr").as_int();
    uint64_t size = static_cast<uint64_t>(*e.get("size").as_int());
    if (a == "alloc") {
      live[addr] = (size + 511) / 512 * 512;
      cur += live[addr];
      peak = std::max(peak, cur);
    } else if (a == "free_requested") {
      cur -= live.at(addr);
      live.erase(addr);
    }
  }
  return peak;
}

TEST(Snapshot, ReplayingTheTraceGivesTheModelsPeak) {
  const Trace trace = SmallTrace();
  Written w = Write(trace, false);
  AllocatorReplayOptions o;
  o.warmup_step = false;
  auto model = ReplayCachingAllocator(trace, o);
  ASSERT_TRUE(model.ok());
  // Block sizes: after T, 3072 + 3072 + 22 MiB (W's unsplit block) + 24 MiB + 512.
  EXPECT_EQ(model->max_allocated, 46 * MiB + 6656);
  EXPECT_EQ(w.summary.max_allocated, 46 * MiB + 6656);
  // Requests rounded: 3072 + 3072 + (21 MiB + 1024) + (24 MiB + 512).
  EXPECT_EQ(model->max_requested, 45 * MiB + 7680);
  EXPECT_EQ(w.summary.max_requested, 45 * MiB + 7680);
  EXPECT_EQ(model->max_reserved, 70 * MiB);
  EXPECT_EQ(w.summary.max_reserved, 70 * MiB);

  auto doc = ParsePickle(w.bytes);
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ(ReplayRoundedPeak(doc->root().get("device_traces").at(0), 0), model->max_requested);

  auto t = ReadSnapshotTimeline(doc->root());
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_TRUE(t->figures.has_trace);
  EXPECT_EQ(t->figures.trace_entries, 14u);
  EXPECT_EQ(t->figures.allocations, 6u);  // P A B W G T
  EXPECT_EQ(t->figures.peak_allocated, 45 * MiB + 7680);
  EXPECT_EQ(t->figures.peak_point, 6);
  // Requested: 3000 + 3000 + 21 MiB + 1000 + 24 MiB + 100.
  EXPECT_EQ(t->figures.peak_requested, 45 * MiB + 7100);
  EXPECT_EQ(t->figures.peak_reserved, 70 * MiB);
  EXPECT_EQ(t->figures.final_reserved, 70 * MiB);
  EXPECT_EQ(t->figures.final_allocated, 46 * MiB + 6656);
  EXPECT_EQ(t->figures.segments, 4u);
  // Timeline: P 3072; A +1.5 MiB; B +1024; W (B freed) 3072 + 1.5 MiB + 21 MiB + 1024; G
  // +3072; T (A freed) +24 MiB + 512.
  const std::vector<uint64_t> timeline = {0,
                                          3072,
                                          3072 + 1536 * KiB,
                                          4096 + 1536 * KiB,
                                          3072 + 1536 * KiB + 21 * MiB + 1024,
                                          6144 + 1536 * KiB + 21 * MiB + 1024,
                                          45 * MiB + 7680};
  EXPECT_EQ(t->allocated, timeline);
  ASSERT_EQ(t->at_peak.size(), 4u);  // T, W, P, G
  EXPECT_EQ(t->at_peak[0].size, 24 * MiB + 100);
  EXPECT_EQ(t->at_peak[0].rounded, 24 * MiB + 512);
  EXPECT_EQ(t->at_peak[0].category, "optimizer_state");
  EXPECT_EQ(t->at_peak[1].order, 3);
  EXPECT_EQ(t->at_peak[1].label.rfind("W_act:3:", 0), 0u) << t->at_peak[1].label;
  EXPECT_EQ(t->at_peak[2].order, 0);  // P before G: equal sizes by allocation order
  EXPECT_EQ(t->at_peak[3].order, 4);
  EXPECT_EQ(t->figures.alive_at_peak_bytes, 45 * MiB + 7680);
}

// The allocator test's warm-up trace (tests/allocator_test.cc): P 12 MiB, S 16 MiB optimizer
// state; forward X 16 MiB; backward G 12 MiB, X freed; optimizer T 12 MiB temporary; G freed.
Trace WarmupTrace() {
  TraceBuilder t;
  t.Step(Phase::kSetup);
  t.Alloc("P", 12 * MiB, Category::kParameters);
  t.Alloc("S", 16 * MiB, Category::kOptimizerState);
  t.Step(Phase::kForward);
  BufferId x = t.Alloc("X", 16 * MiB, Category::kSavedActivations);
  t.Step(Phase::kBackward);
  BufferId g = t.Alloc("G", 12 * MiB, Category::kGradients);
  t.Free(x);
  t.Step(Phase::kOptimizer);
  BufferId tmp = t.Alloc("T", 12 * MiB);
  t.Free(tmp);
  t.Step(Phase::kOptimizer);
  t.Free(g);
  return t.trace();
}

TEST(Snapshot, WarmupStepRecordsTheSecondStepOnly) {
  Written w = Write(WarmupTrace(), true);
  EXPECT_TRUE(w.summary.warmup_applied);
  // As in allocator_test: reserved 68 MiB (X's new 16 MiB segment in step 2), allocated 56.
  EXPECT_EQ(w.summary.max_reserved, 68 * MiB);
  EXPECT_EQ(w.summary.max_allocated, 56 * MiB);
  auto doc = ParsePickle(w.bytes);
  ASSERT_TRUE(doc.ok());
  PickleRef trace = doc->root().get("device_traces").at(0);
  // Step 2: X finds only 12 MiB blocks free (segment_alloc, alloc); G and T take those
  // (alloc each); X, T and G are freed (free_requested, free_completed each): 10 entries.
  EXPECT_EQ(trace.size(), 10u);
  EXPECT_EQ(trace.at(0).get("action").str(), "segment_alloc");
  EXPECT_EQ(trace.at(0).get("size").as_int(), static_cast<int64_t>(16 * MiB));
  // P and S were made before the recording: 28 MiB at its start.
  EXPECT_EQ(ReplayRoundedPeak(trace, 28 * MiB), 56 * MiB);
  auto t = ReadSnapshotTimeline(doc->root());
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(t->figures.allocations, 3u);
  EXPECT_EQ(t->figures.peak_allocated, 56 * MiB);
  EXPECT_EQ(t->figures.peak_point, 2);  // after G
  EXPECT_EQ(t->allocated.front(), 28 * MiB);
  EXPECT_EQ(t->figures.peak_reserved, 68 * MiB);  // 52 at the start + X's 16
  EXPECT_EQ(t->figures.final_reserved, 68 * MiB);
  EXPECT_EQ(t->figures.final_allocated, 28 * MiB);  // P and S
  ASSERT_EQ(t->at_peak.size(), 4u);
  // S and X (16 MiB): S from before the recording (order -1) first.
  EXPECT_EQ(t->at_peak[0].order, -1);
  EXPECT_EQ(t->at_peak[0].label.rfind("S:1:", 0), 0u) << t->at_peak[0].label;
  EXPECT_EQ(t->at_peak[1].order, 0);
}

TEST(Snapshot, CapacityFlushFreesSegmentsThenRetries) {
  // Capacity 50 MiB: T's 26 MiB segment does not fit next to 44 reserved; the flush frees L1
  // (20 MiB, empty since A was freed), and 24 + 26 = 50 fits: L3 at the next address.
  MemorySnapshotOptions o;
  o.replay.warmup_step = false;
  o.replay.allocator.capacity_bytes = 50 * MiB;
  std::ostringstream out;
  auto s = WriteMemorySnapshot(SmallTrace(), o, out);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_FALSE(s->oom);
  EXPECT_EQ(s->max_reserved, 50 * MiB);  // after the flush; 44 before it
  auto doc = ParsePickle(out.str());
  ASSERT_TRUE(doc.ok());
  PickleRef trace = doc->root().get("device_traces").at(0);
  ASSERT_EQ(trace.size(), 15u);
  EXPECT_EQ(trace.at(12).get("action").str(), "segment_free");
  EXPECT_EQ(trace.at(12).get("addr").as_int(), static_cast<int64_t>(kBase + 2 * MiB));
  EXPECT_EQ(trace.at(13).get("action").str(), "segment_alloc");
  EXPECT_EQ(trace.at(13).get("addr").as_int(), static_cast<int64_t>(kBase + 44 * MiB));
  EXPECT_EQ(trace.at(13).get("size").as_int(), static_cast<int64_t>(26 * MiB));
  EXPECT_EQ(trace.at(14).get("action").str(), "alloc");
  EXPECT_EQ(doc->root().get("segments").size(), 3u);  // S1, L2, L3
  auto t = ReadSnapshotTimeline(doc->root());
  ASSERT_TRUE(t.ok());
  // From 0: +2 +20 +22 = 44, -20 = 24, +26 = 50.
  EXPECT_EQ(t->figures.peak_reserved, 50 * MiB);
  EXPECT_EQ(t->figures.final_reserved, 50 * MiB);
}

TEST(Snapshot, CapacityFlushFreesSegmentsThenFails) {
  // Capacity 45 MiB: T's 26 MiB segment does not fit next to 44 reserved; the flush frees L1
  // (20 MiB, empty since A was freed): 24 + 26 = 50 > 45 still: out of memory, device free
  // 45 - 24 = 21 MiB.
  MemorySnapshotOptions o;
  o.replay.warmup_step = false;
  o.replay.allocator.capacity_bytes = 45 * MiB;
  std::ostringstream out;
  auto s = WriteMemorySnapshot(SmallTrace(), o, out);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_TRUE(s->oom);
  auto doc = ParsePickle(out.str());
  ASSERT_TRUE(doc.ok());
  PickleRef trace = doc->root().get("device_traces").at(0);
  ASSERT_EQ(trace.size(), 14u);  // 12 entries up to G and free A, segment_free, oom
  PickleRef freed = trace.at(12);
  EXPECT_EQ(freed.get("action").str(), "segment_free");
  EXPECT_EQ(freed.get("addr").as_int(), static_cast<int64_t>(kBase + 2 * MiB));
  EXPECT_EQ(freed.get("size").as_int(), static_cast<int64_t>(20 * MiB));
  PickleRef oom = trace.at(13);
  EXPECT_EQ(oom.get("action").str(), "oom");
  EXPECT_EQ(oom.get("device_free").as_int(), static_cast<int64_t>(21 * MiB));
  EXPECT_EQ(oom.get("size").as_int(), static_cast<int64_t>(24 * MiB + 100));
  EXPECT_FALSE(oom.get("addr").valid());
  EXPECT_EQ(doc->root().get("segments").size(), 2u);  // S1 and L2
}

TEST(Snapshot, RefusesExpandableSegmentsAndBadTraces) {
  MemorySnapshotOptions o;
  o.replay.allocator.expandable_segments = true;
  std::ostringstream out;
  auto s = WriteMemorySnapshot(SmallTrace(), o, out);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("expandable"), std::string::npos);
  Trace bad = SmallTrace();
  bad.events.push_back({Event::Kind::kFree, 99, 0});
  s = WriteMemorySnapshot(bad, MemorySnapshotOptions{}, out);
  EXPECT_FALSE(s.ok());
  Trace huge = SmallTrace();
  huge.buffers[0].bytes = uint64_t{1} << 62;
  s = WriteMemorySnapshot(huge, MemorySnapshotOptions{}, out);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("64-bit"), std::string::npos);
}

// ---- comparison ------------------------------------------------------------------------------

TEST(SnapshotCompare, ASnapshotComparedWithItselfShowsNoDifference) {
  Written w = Write(SmallTrace(), false);
  auto doc = ParsePickle(w.bytes);
  ASSERT_TRUE(doc.ok());
  auto c = CompareSnapshots(doc->root(), doc->root());
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->real.peak_allocated, c->predicted.peak_allocated);
  EXPECT_EQ(c->real.peak_reserved, c->predicted.peak_reserved);
  EXPECT_FALSE(c->divergence.has_value());
  EXPECT_FALSE(c->first_size_mismatch.has_value());
  EXPECT_EQ(c->matched, 4u);
  EXPECT_EQ(c->matched_bytes, 45 * MiB + 7680);
  EXPECT_EQ(c->real_unmatched, 0u);
  EXPECT_TRUE(c->predicted_unmatched.empty());
  for (const auto& m : c->at_peak) {
    ASSERT_TRUE(m.predicted.has_value());
    EXPECT_TRUE(m.exact_size);
    EXPECT_EQ(m.predicted->order, m.real.order);  // each with itself
    EXPECT_EQ(m.scope_score, 1.0);
  }
  auto j = SnapshotComparisonJson(*c);
  EXPECT_TRUE(j["divergence"].is_null());
  EXPECT_EQ(j["at_peak"]["matched"], 4);
  EXPECT_EQ(j["real"]["peak_allocated_bytes"], 45 * MiB + 7680);
  std::string text = RenderSnapshotComparison(*c);
  EXPECT_NE(text.find("stay within"), std::string::npos) << text;

  // Through the trace: the same, and the model's figures filled in.
  auto ct = CompareSnapshotWithTrace(doc->root(), SmallTrace(), [] {
    MemorySnapshotOptions o;
    o.replay.warmup_step = false;
    return o;
  }());
  ASSERT_TRUE(ct.ok()) << ct.error().message;
  EXPECT_FALSE(ct->divergence.has_value());
  EXPECT_EQ(ct->model_max_allocated, 46 * MiB + 6656);
  EXPECT_EQ(ct->model_max_reserved, 70 * MiB);
}

TEST(SnapshotCompare, ALargerActivationIsNamed) {
  // The "real" run's W is 30 MiB instead of 21 MiB + 1000 B.
  Written real = Write(SmallTrace(9 * MiB), false);
  auto real_doc = ParsePickle(real.bytes);
  ASSERT_TRUE(real_doc.ok());
  MemorySnapshotOptions o;
  o.replay.warmup_step = false;
  auto c = CompareSnapshotWithTrace(real_doc->root(), SmallTrace(), o);
  ASSERT_TRUE(c.ok()) << c.error().message;
  // Real peak: 3072 + 3072 + 30 MiB + 24 MiB + 512 = 54 MiB + 6656.
  EXPECT_EQ(c->real.peak_allocated, 54 * MiB + 6656);
  EXPECT_EQ(c->predicted.peak_allocated, 45 * MiB + 7680);
  // Threshold 5% of 54 MiB + 6656 (floor); the timelines part at point 4, W's allocation:
  // real 3072 + 1.5 MiB + 30 MiB against 3072 + 1.5 MiB + 21 MiB + 1024.
  EXPECT_EQ(c->divergence_threshold_bytes, (54 * MiB + 6656) * 5 / 100);
  ASSERT_TRUE(c->divergence.has_value());
  EXPECT_EQ(c->divergence->point, 4);
  EXPECT_EQ(c->divergence->real_bytes, 3072 + 1536 * KiB + 30 * MiB);
  EXPECT_EQ(c->divergence->predicted_bytes, 3072 + 1536 * KiB + 21 * MiB + 1024);
  ASSERT_TRUE(c->divergence->real_alloc.has_value());
  EXPECT_EQ(c->divergence->real_alloc->label.rfind("W_act:3:", 0), 0u);
  ASSERT_TRUE(c->first_size_mismatch.has_value());
  EXPECT_EQ(c->first_size_mismatch->point, 4);
  EXPECT_EQ(c->first_size_mismatch->predicted_alloc->rounded, 21 * MiB + 1024);
  // At the peak: P, G, T match exactly; W (30 MiB vs 21 MiB: beyond 5%) matches nothing.
  EXPECT_EQ(c->matched, 3u);
  EXPECT_EQ(c->real_unmatched, 1u);
  EXPECT_EQ(c->real_unmatched_bytes, 30 * MiB);
  ASSERT_EQ(c->predicted_unmatched.size(), 1u);
  EXPECT_EQ(c->predicted_unmatched[0].label.rfind("W_act:3:", 0), 0u);
  std::string text = RenderSnapshotComparison(*c);
  EXPECT_NE(text.find("W_act"), std::string::npos) << text;
  EXPECT_NE(text.find("no predicted tensor"), std::string::npos) << text;
  auto j = SnapshotComparisonJson(*c);
  EXPECT_EQ(j["divergence"]["point"], 4);
  EXPECT_EQ(j["at_peak"]["real_unmatched_bytes"], 30 * MiB);
}

TEST(SnapshotCompare, SizesWithinTheToleranceMatchInTheSecondPass) {
  // W 21 MiB + 512 KiB + 1000 B in the real run: 21.5 MiB + 1024 against 21 MiB + 1024,
  // 2.3% apart.
  Written real = Write(SmallTrace(512 * KiB + 1000), false);
  Written pred = Write(SmallTrace(), false);
  auto r = ParsePickle(real.bytes);
  auto p = ParsePickle(pred.bytes);
  ASSERT_TRUE(r.ok() && p.ok());
  auto c = CompareSnapshots(r->root(), p->root());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->matched, 4u);
  EXPECT_FALSE(c->divergence.has_value());  // 512 KiB < 5% of the peak
  ASSERT_TRUE(c->first_size_mismatch.has_value());
  EXPECT_EQ(c->first_size_mismatch->point, 4);
  int inexact = 0;
  for (const auto& m : c->at_peak) inexact += m.exact_size ? 0 : 1;
  EXPECT_EQ(inexact, 1);
  SnapshotCompareOptions strict;
  strict.size_tolerance = 0.01;
  c = CompareSnapshots(r->root(), p->root(), strict);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->matched, 3u);
}

TEST(SnapshotCompare, RefusesWhatIsNotASnapshot) {
  std::ostringstream out;
  PickleWriter w(out);
  w.Int(5);
  ASSERT_TRUE(w.Finish());
  auto doc = ParsePickle(out.str());
  ASSERT_TRUE(doc.ok());
  auto t = ReadSnapshotTimeline(doc->root());
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().message.find("neither"), std::string::npos);

  std::ostringstream out2;
  PickleWriter w2(out2);
  w2.BeginDict();
  w2.Str("segments");
  w2.Int(3);
  w2.EndDict();
  ASSERT_TRUE(w2.Finish());
  doc = ParsePickle(out2.str());
  ASSERT_TRUE(doc.ok());
  t = ReadSnapshotTimeline(doc->root());
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().message.find("'segments' is not a list"), std::string::npos);

  Written big = Write(SmallTrace(), false);
  doc = ParsePickle(big.bytes);
  ASSERT_TRUE(doc.ok());
  SnapshotCompareOptions tiny;
  tiny.max_work = 50;
  t = ReadSnapshotTimeline(doc->root(), tiny);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().message.find("values visited"), std::string::npos);
}

// torch < 2.1 wrote blocks without addresses (they tile the segment) and no requested size
// on old ones; torch.cuda.memory_snapshot() before 2.0 gave the list of segments alone.
std::string SegmentsOnly(bool as_list) {
  std::ostringstream out;
  PickleWriter w(out);
  if (!as_list) {
    w.BeginDict();
    w.Str("segments");
  }
  w.BeginList();
  w.BeginDict();
  for (auto [k, v] : std::vector<std::pair<const char*, int64_t>>{
           {"device", 0}, {"address", 1 << 20}, {"total_size", 2 * MiB}, {"stream", 0}}) {
    w.Str(k);
    w.Int(v);
  }
  w.Str("blocks");
  w.BeginList();
  auto block = [&](int64_t size, int64_t requested, const char* state) {
    w.BeginDict();
    w.Str("size");
    w.Int(size);
    if (requested >= 0) {
      w.Str("requested_size");
      w.Int(requested);
    }
    w.Str("state");
    w.Str(state);
    w.EndDict();
  };
  block(1024, 1000, "active_allocated");
  block(512, -1, "active_allocated");  // no requested size: the block's
  block(2 * MiB - 1536, 0, "inactive");
  w.EndList();
  w.EndDict();
  w.EndList();
  if (!as_list) w.EndDict();
  EXPECT_TRUE(w.Finish());
  return out.str();
}

TEST(SnapshotCompare, WithoutATraceTheFinalSegmentsAreTheFigures) {
  for (bool as_list : {false, true}) {
    SCOPED_TRACE(as_list);
    auto doc = ParsePickle(SegmentsOnly(as_list));
    ASSERT_TRUE(doc.ok()) << doc.error().message;
    auto t = ReadSnapshotTimeline(doc->root());
    ASSERT_TRUE(t.ok()) << t.error().message;
    EXPECT_FALSE(t->figures.has_trace);
    EXPECT_EQ(t->figures.allocations, 0u);
    EXPECT_EQ(t->figures.segments, 1u);
    EXPECT_EQ(t->figures.final_reserved, 2 * MiB);
    EXPECT_EQ(t->figures.peak_reserved, 2 * MiB);
    EXPECT_EQ(t->figures.final_allocated, 1536u);
    EXPECT_EQ(t->figures.peak_allocated, 1536u);  // 1000 -> 1024, 512
    EXPECT_EQ(t->figures.peak_requested, 1512u);  // 1000 + 512
    ASSERT_EQ(t->at_peak.size(), 2u);
    EXPECT_EQ(t->at_peak[0].addr, uint64_t{1} << 20);
    EXPECT_EQ(t->at_peak[1].addr, (uint64_t{1} << 20) + 1024);  // after the first block
    ASSERT_EQ(t->notes.size(), 1u);
    EXPECT_NE(t->notes[0].find("no device trace"), std::string::npos);
  }
}

// ---- a snapshot written as PyTorch writes it ------------------------------------------------

// tests/data/snapshot/torch_snapshot_p{2,4}.pickle, from validation/make_snapshot_fixture.py:
// device 0, segments S0 (small, 2 MiB at A0) and L0 (20 MiB at A1); trace: segment_alloc L0,
// alloc #0 4 MiB at A1, alloc #1 1000 B, alloc #2 2048 B freed at once (requested and
// completed), free (requested, completed) of "old" 8 MiB made before the recording, alloc #3
// 512 B, segment_free of old's 12 MiB segment, free_requested of #3 (pending at the end), oom
// (1 GiB, 1 MiB free). S0 also holds x (4 B, 512 B block), alive throughout, never recorded.
TEST(SnapshotFixture, ReadsAPyTorchSnapshot) {
  constexpr uint64_t A0 = 0x7F0000000000, A1 = A0 + 2 * MiB;
  for (const char* name : {"torch_snapshot_p2.pickle", "torch_snapshot_p4.pickle"}) {
    SCOPED_TRACE(name);
    auto doc = ReadPickleFile(std::string(VRAMSIM_SNAPSHOT_DATA) + "/" + name);
    ASSERT_TRUE(doc.ok()) << doc.error().message;
    PickleRef root = doc->root();
    PickleRef seg0 = root.get("segments").at(0);
    EXPECT_TRUE(seg0.get("segment_pool_id").is(PickleKind::kTuple));
    EXPECT_EQ(seg0.get("address").as_int(), static_cast<int64_t>(A0));
    EXPECT_EQ(root.get("device_traces").size(), 2u);
    EXPECT_EQ(root.get("device_traces").at(0).at(11).get("device_free").as_int(),
              static_cast<int64_t>(MiB));

    auto t = ReadSnapshotTimeline(root);
    ASSERT_TRUE(t.ok()) << t.error().message;
    EXPECT_EQ(t->device, 0);  // 12 entries against device 1's none
    EXPECT_EQ(t->figures.trace_entries, 12u);
    EXPECT_EQ(t->figures.allocations, 4u);
    EXPECT_EQ(t->figures.segments, 2u);
    EXPECT_EQ(t->figures.final_reserved, 22 * MiB);
    EXPECT_EQ(t->figures.final_allocated, 512 + 1024 + 4 * MiB);  // pending-free not counted
    // Point 0: old 8 MiB + x 512; #0 +4 MiB; #1 +1024; #2 +2048; #2 and old freed, #3 +512.
    const std::vector<uint64_t> timeline = {8 * MiB + 512, 12 * MiB + 512, 12 * MiB + 1536,
                                            12 * MiB + 3584, 4 * MiB + 2048};
    EXPECT_EQ(t->allocated, timeline);
    EXPECT_EQ(t->figures.peak_allocated, 12 * MiB + 3584);
    EXPECT_EQ(t->figures.peak_point, 3);
    EXPECT_EQ(t->figures.peak_requested, 12 * MiB + 3052);  // 8 MiB + 4 + 4 MiB + 1000 + 2048
    // Reserved at the start: 22 final + 12 freed - 20 made = 14 MiB; 34 after L0.
    EXPECT_EQ(t->figures.peak_reserved, 34 * MiB);
    ASSERT_EQ(t->at_peak.size(), 5u);  // old, #0, #2, #1, x
    EXPECT_EQ(t->at_peak[0].order, -1);
    EXPECT_EQ(t->at_peak[0].size, 8 * MiB);
    EXPECT_EQ(t->at_peak[0].label, "train.py:50:train_step");
    EXPECT_EQ(t->at_peak[1].order, 0);
    EXPECT_EQ(t->at_peak[1].addr, A1);
    EXPECT_EQ(t->at_peak[1].label,
              "/usr/lib/python3/dist-packages/torch/nn/modules/linear.py:114:forward < "
              "train.py:42:train_step");
    EXPECT_EQ(t->at_peak[2].order, 2);
    EXPECT_EQ(t->at_peak[2].size, 2048u);
    EXPECT_EQ(t->at_peak[3].size, 1000u);
    EXPECT_EQ(t->at_peak[4].size, 4u);
    EXPECT_EQ(t->at_peak[4].rounded, 512u);
    EXPECT_EQ(t->figures.alive_at_peak_bytes, 12 * MiB + 3584);
    ASSERT_EQ(t->notes.size(), 1u);
    EXPECT_NE(t->notes[0].find("out of memory after 4 recorded allocations: a request of "
                               "1073741824 bytes with 1048576 bytes free"),
              std::string::npos)
        << t->notes[0];

    auto c = CompareSnapshots(root, root);
    ASSERT_TRUE(c.ok()) << c.error().message;
    EXPECT_FALSE(c->divergence.has_value());
    EXPECT_EQ(c->matched, 5u);
    EXPECT_TRUE(c->predicted_unmatched.empty());
  }
}

TEST(SnapshotFixture, BothProtocolsReadAlike) {
  auto p2 = ReadPickleFile(std::string(VRAMSIM_SNAPSHOT_DATA) + "/torch_snapshot_p2.pickle");
  auto p4 = ReadPickleFile(std::string(VRAMSIM_SNAPSHOT_DATA) + "/torch_snapshot_p4.pickle");
  ASSERT_TRUE(p2.ok() && p4.ok());
  auto c = CompareSnapshots(p2->root(), p4->root());
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_FALSE(c->divergence.has_value());
  EXPECT_FALSE(c->first_size_mismatch.has_value());
  EXPECT_EQ(c->real.peak_reserved, c->predicted.peak_reserved);
  auto missing = ReadPickleFile(std::string(VRAMSIM_SNAPSHOT_DATA) + "/missing.pickle");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("cannot open"), std::string::npos);
}

}  // namespace
}  // namespace vramsim
