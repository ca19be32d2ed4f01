// PyTorch CUDA memory snapshots: the predicted step written in the format
// torch.cuda.memory._dump_snapshot() writes (torch 2.1+) and torch/cuda/_memory_viz.py /
// pytorch.org/memory_viz (MemoryViz.js) read, and a safe reader for such files.
//
// What is written (one device, one stream), addresses and layout from vramsim's caching
// allocator model (simulator/allocator.h) replayed exactly as ReplayCachingAllocator replays
// it (the figures are checked against it before anything is written):
//   {"segments": [...], "device_traces": [[...]], "allocator_settings": {...},
//    "external_annotations": []}
// - segments: the allocator's segments after the step, by address: device 0, address,
//   total_size (get_allocation_size(): 2 MiB small-pool segments, 20 MiB for 1-10 MiB
//   requests, else the request rounded up to 2 MiB), allocated_size and active_size (sizes of
//   the allocated blocks), requested_size (their requests), stream 0, segment_type
//   "small"/"large", segment_pool_id [0, 0] (a list: only dict/list/str/int/bool/None/float
//   are written; PyTorch writes a tuple that no reader looks at), is_expandable false, frames
//   (of the allocation that made the segment) and blocks tiling the segment: address, size
//   (the block: the request rounded up to 512 B, more when the remainder was too small to
//   split), requested_size (the request in bytes, 0 for a free block), state
//   "active_allocated" or "inactive", frames.
// - device_traces: one list for device 0 with the measured step's entries, as a user who
//   calls torch.cuda.memory._record_memory_history() after a warm-up step would record them
//   (when the allocator model applies a warm-up step; otherwise everything from the setup):
//   segment_alloc (addr, size of the segment), alloc (addr, size = the request in bytes),
//   free_requested + free_completed (addr, the request), segment_free (a cudaFree when the
//   capacity forces a cache flush), oom (device_free, size) when the step does not fit.
//   stream 0, time_us the entry's ordinal (the model has no clock), frames, and on alloc
//   entries a category.
// - frames, innermost first, each {"filename", "line", "name"}:
//   [{tensor name, buffer id, "<category>: <why it is alive>"},
//    {module scope of the op ("/h.0/attn/", "/" at the top), step index, "<op type> <op name>"},
//    {"vramsim", 0, phase ("forward", "backward", "optimizer", ...)}]
//   (a free entry's op frame is the op after which the tensor is freed); a library workspace
//   has [{"vramsim", 0, "<name> (library workspace)"}].
// - category, on alloc entries (the names torch.profiler's memory timeline gives, which
//   MemoryViz colours by): parameters "parameter", gradients "gradient", optimizer state
//   "optimizer_state", saved activations "activation", transient tensors "temporary", the
//   batch "input", buffers (BatchNorm statistics, masks) "buffer" (the profiler has no class
//   for them), library workspaces "unknown"; segment_alloc entries carry "unknown" too:
//   MemoryViz throws when some entry has a category and none is "unknown".
// - allocator_settings: PYTORCH_CUDA_ALLOC_CONF "", max_split_size -1 (unlimited, as PyTorch
//   writes SIZE_MAX), garbage_collection_threshold 0.0, expandable_segments false,
//   roundup_power2_divisions {"1": 0, "2": 0, ..., "32768": 0}.
// Pickle protocol 4 without frames (MemoryViz refuses protocol 5), containers in batches of
// 1000 as Python's pickler writes them (MemoryViz spreads a batch into one call), integers as
// BININT1/BININT2/BININT/LONG1 of at most 8 bytes, strings as valid UTF-8 (names from the
// model escaped as importer/validate.h's Printable does).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "importer/status.h"
#include "simulator/allocator.h"
#include "simulator/trace.h"

namespace vramsim {

// ---- Writing ----------------------------------------------------------------------------

struct MemorySnapshotOptions {
  // The replay the allocator report came from (warm-up, extra allocations, capacity).
  AllocatorReplayOptions replay;
};

struct MemorySnapshotSummary {
  uint64_t trace_entries = 0;
  uint64_t segments = 0;       // at the end
  uint64_t max_allocated = 0;  // block sizes (torch.cuda.max_memory_allocated())
  uint64_t max_requested = 0;  // requests rounded to 512 B (what a replay of the trace gives)
  uint64_t max_reserved = 0;
  // At the end of the step, from the allocator's counters (not from the segments written).
  uint64_t final_allocated = 0;
  uint64_t final_reserved = 0;
  uint64_t bytes_written = 0;
  bool warmup_applied = false;  // device_traces hold the measured (second) step only
  bool oom = false;
};

// The predicted step as a snapshot pickle. Refuses expandable segments (their page maps are
// not recorded by the model yet) and traces the allocator replay refuses.
Result<MemorySnapshotSummary> WriteMemorySnapshot(const Trace& trace,
                                                  const MemorySnapshotOptions& options,
                                                  std::ostream& out);
Result<MemorySnapshotSummary> WriteMemorySnapshotFile(const Trace& trace,
                                                      const MemorySnapshotOptions& options,
                                                      const std::string& path);

// A streaming pickle encoder for plain data: values are emitted in order, a dict as
// BeginDict, then key and value for each entry, then EndDict.
class PickleWriter {
 public:
  explicit PickleWriter(std::ostream& out);  // writes the PROTO 4 header
  void None();
  void Bool(bool v);
  void Int(int64_t v);
  // Refuses (returns false, writes nothing) a value over INT64_MAX: never a 9-byte LONG1.
  [[nodiscard]] bool UInt(uint64_t v);
  void Float(double v);
  void Str(std::string_view utf8);  // must be valid UTF-8 (see Utf8OrEscaped)
  void BeginList();
  void EndList();
  void BeginDict();
  void EndDict();
  // STOP; flushes. False when the stream failed.
  bool Finish();
  uint64_t bytes() const { return bytes_; }

 private:
  struct Open {
    bool dict = false;
    uint32_t batch = 0;  // items (dict: complete pairs) since the last MARK
    bool have_key = false;
  };
  void BeforeValue();
  void AfterValue();
  void Op(uint8_t op) { buf_.push_back(static_cast<char>(op)); }
  void Raw(const void* p, size_t n) { buf_.append(static_cast<const char*>(p), n); }
  void MaybeFlush();

  std::ostream& out_;
  std::string buf_;
  std::vector<Open> open_;
  uint64_t bytes_ = 0;
};

// Text as valid UTF-8: invalid bytes become \xNN.
std::string Utf8OrEscaped(std::string_view text);

// ---- Reading ----------------------------------------------------------------------------

enum class PickleKind : uint8_t { kNone, kBool, kInt, kFloat, kStr, kBytes, kList, kTuple, kDict };

struct PickleLimits {
  uint64_t max_input_bytes = uint64_t{2} << 30;
  uint64_t max_values = uint64_t{16} << 20;  // values made (memo references are free)
  uint32_t max_depth = 100;                  // nesting, counted on the value graph
};

class PickleDoc;

// A value in a PickleDoc. Values shared through the pickle memo are one value referenced
// from several places (as in Python), so walking everything reachable can cost more than the
// document's size; readers that walk untrusted documents bound their work.
class PickleRef {
 public:
  PickleRef() = default;
  PickleKind kind() const;
  bool valid() const { return doc_ != nullptr; }
  bool is(PickleKind k) const { return valid() && kind() == k; }
  std::optional<int64_t> as_int() const;    // kInt (and kBool, as Python's int(True))
  std::optional<double> as_number() const;  // kInt or kFloat
  std::optional<bool> as_bool() const;
  std::string_view str() const;   // kStr or kBytes; empty otherwise
  size_t size() const;            // items of a list or tuple, entries of a dict
  PickleRef at(size_t i) const;   // item i of a list or tuple
  PickleRef key(size_t i) const;  // entry i of a dict
  PickleRef value(size_t i) const;
  // The value of a string key (the last one, as Python's dict keeps); invalid when absent.
  PickleRef get(std::string_view key) const;

 private:
  friend class PickleDoc;
  PickleRef(const PickleDoc* doc, uint32_t index) : doc_(doc), index_(index) {}
  const PickleDoc* doc_ = nullptr;
  uint32_t index_ = 0;
};

class PickleDoc {
 public:
  PickleRef root() const { return PickleRef(this, root_); }
  size_t values() const { return nodes_.size(); }

 private:
  friend class PickleRef;
  friend class PickleParser;
  struct Node {
    PickleKind kind = PickleKind::kNone;
    int64_t i = 0;  // kInt, kBool
    double f = 0;
    uint64_t str_offset = 0, str_size = 0;  // kStr, kBytes: in strings_
    std::vector<uint32_t> items;            // list/tuple items; dict keys and values interleaved
  };
  std::vector<Node> nodes_;
  std::string strings_;
  uint32_t root_ = 0;
};

// Python's pickle protocols 1 to 5 for plain data: dict, list, tuple, str, bytes, int (at
// most 8 bytes), float, bool, None, with the memo and frames. Anything that would import or
// call code (GLOBAL, STACK_GLOBAL, REDUCE, BUILD, INST, OBJ, NEWOBJ, EXT*, PERSID, buffers)
// and anything malformed, truncated, cyclic, too deep or over the limits is refused with one
// error naming the opcode and offset.
Result<PickleDoc> ParsePickle(std::string_view bytes, const PickleLimits& limits = {});
Result<PickleDoc> ReadPickle(std::istream& in, const PickleLimits& limits = {});
Result<PickleDoc> ReadPickleFile(const std::string& path, const PickleLimits& limits = {});

}  // namespace vramsim
