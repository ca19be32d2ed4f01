#include "reports/memory_snapshot_compare.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "importer/validate.h"

namespace vramsim {
namespace {

constexpr uint64_t kBlock = 512;  // kMinBlockSize: every request is handed out in these

// The block a request gets, short of unsplit remainders: round_size(). 0 stays 0 (PyTorch
// makes no block, and records nothing, for an empty tensor).
uint64_t Rounded(uint64_t bytes) {
  if (bytes == 0) return 0;
  if (bytes > std::numeric_limits<uint64_t>::max() - (kBlock - 1)) return bytes;
  return (bytes + kBlock - 1) / kBlock * kBlock;
}

bool AddChecked(uint64_t* acc, uint64_t v) {
  if (v > std::numeric_limits<uint64_t>::max() - *acc) return false;
  *acc += v;
  return true;
}

// Reads one snapshot with a bound on the values visited (memo-shared values can make a small
// file expand into far more work than its size).
class Reader {
 public:
  explicit Reader(const SnapshotCompareOptions& o) : o_(o) {}

  Result<SnapshotTimeline> Read(PickleRef root);

 private:
  struct Block {
    uint64_t addr = 0, size = 0, requested = 0;
    bool active = false;  // active_allocated
    PickleRef frames;
  };
  struct Seg {
    int device = 0;
    uint64_t total = 0;
    std::vector<Block> blocks;
  };

  bool Visit(uint64_t n = 1) {
    work_ += n;
    return work_ <= o_.max_work;
  }
  Error OverWork() const {
    return Error{
        fmt::format("snapshot: more than {} values visited (limit); the file is too "
                    "large or shares values too often",
                    o_.max_work)};
  }
  // A non-negative integer field; nullopt when absent or of another kind.
  static std::optional<uint64_t> U64(PickleRef d, std::string_view key) {
    auto v = d.get(key).as_int();
    if (!v || *v < 0) return std::nullopt;
    return static_cast<uint64_t>(*v);
  }
  // Label and words of a frames list (innermost first).
  bool Describe(PickleRef frames, SnapshotAllocation* a);
  Status ReadSegments(PickleRef list);

  const SnapshotCompareOptions& o_;
  uint64_t work_ = 0;
  std::vector<Seg> segs_;
};

std::string FrameText(PickleRef f) {
  auto line = f.get("line").as_int();
  std::string file(f.get("filename").str());
  return fmt::format("{}:{}:{}", Printable(file, 200), line ? *line : 0,
                     Printable(std::string(f.get("name").str()), 200));
}

// Words of a frame for matching: lower-case alphanumeric runs of its file name and function
// name (a real frame's line number says nothing about the predicted one's).
void AddWords(std::string_view text, std::set<std::string>* out) {
  std::string w;
  for (char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      w.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
      continue;
    }
    if (!w.empty()) out->insert(w);
    w.clear();
  }
  if (!w.empty()) out->insert(w);
}

bool Reader::Describe(PickleRef frames, SnapshotAllocation* a) {
  if (!frames.is(PickleKind::kList) && !frames.is(PickleKind::kTuple)) return true;
  std::set<std::string> words;
  const size_t n = frames.size();
  if (!Visit(n)) return false;
  for (size_t i = 0; i < n; ++i) {
    PickleRef f = frames.at(i);
    if (!f.is(PickleKind::kDict)) continue;
    if (!Visit(f.size())) return false;
    if (i < 2) a->label += (i ? " < " : "") + FrameText(f);
    AddWords(f.get("filename").str(), &words);
    AddWords(f.get("name").str(), &words);
  }
  a->words.assign(words.begin(), words.end());
  return true;
}

Status Reader::ReadSegments(PickleRef list) {
  if (!list.valid()) return Status::Ok();
  if (!list.is(PickleKind::kList) && !list.is(PickleKind::kTuple)) {
    return Error{"snapshot: 'segments' is not a list"};
  }
  if (!Visit(list.size())) return OverWork();
  for (size_t i = 0; i < list.size(); ++i) {
    PickleRef s = list.at(i);
    if (!s.is(PickleKind::kDict))
      return Error{fmt::format("snapshot: segments[{}] is not a dict", i)};
    if (!Visit(s.size())) return OverWork();
    Seg seg;
    auto dev = s.get("device").as_int();
    seg.device = dev && *dev >= 0 && *dev < 1 << 16 ? static_cast<int>(*dev) : 0;
    auto total = U64(s, "total_size");
    auto base = U64(s, "address");
    if (!total || !base) {
      return Error{fmt::format("snapshot: segments[{}] has no 'address' or 'total_size'", i)};
    }
    seg.total = *total;
    PickleRef blocks = s.get("blocks");
    if (!blocks.is(PickleKind::kList) && !blocks.is(PickleKind::kTuple)) {
      return Error{fmt::format("snapshot: segments[{}] has no 'blocks' list", i)};
    }
    if (!Visit(blocks.size())) return OverWork();
    uint64_t at = *base;  // blocks before torch 2.1 have no address: they tile the segment
    for (size_t k = 0; k < blocks.size(); ++k) {
      PickleRef b = blocks.at(k);
      if (!b.is(PickleKind::kDict)) {
        return Error{fmt::format("snapshot: segments[{}].blocks[{}] is not a dict", i, k)};
      }
      if (!Visit(b.size())) return OverWork();
      Block blk;
      auto size = U64(b, "size");
      if (!size) {
        return Error{fmt::format("snapshot: segments[{}].blocks[{}] has no 'size'", i, k)};
      }
      blk.size = *size;
      blk.addr = U64(b, "address").value_or(at);
      blk.requested = U64(b, "requested_size").value_or(0);
      blk.active = b.get("state").str() == "active_allocated";
      blk.frames = b.get("frames");
      if (blk.active && blk.requested == 0) blk.requested = blk.size;  // torch < 2.1
      at = blk.addr + std::min(blk.size, std::numeric_limits<uint64_t>::max() - blk.addr);
      seg.blocks.push_back(blk);
    }
    segs_.push_back(std::move(seg));
  }
  return Status::Ok();
}

// One recorded allocation during the replay.
struct Span {
  SnapshotAllocation a;
  int64_t born = 0;                                    // first timeline point where it is alive
  int64_t died = std::numeric_limits<int64_t>::max();  // first point where it is not
};

Result<SnapshotTimeline> Reader::Read(PickleRef root) {
  SnapshotTimeline t;
  PickleRef seg_list, traces;
  if (root.is(PickleKind::kDict)) {
    seg_list = root.get("segments");
    traces = root.get("device_traces");
  } else if (root.is(PickleKind::kList)) {
    seg_list = root;  // torch.cuda.memory_snapshot() before 2.0: the segments alone
  } else {
    return Error{"snapshot: the pickle is neither a dict with 'segments' nor a list of segments"};
  }
  if (!seg_list.valid() && !traces.valid()) {
    return Error{"snapshot: no 'segments' or 'device_traces' (not a memory snapshot)"};
  }
  if (auto s = ReadSegments(seg_list); !s) return Error{s.message()};
  if (traces.valid() && !traces.is(PickleKind::kList) && !traces.is(PickleKind::kTuple)) {
    return Error{"snapshot: 'device_traces' is not a list"};
  }

  // The device: asked for, else the one with most trace entries, else most segments.
  int device = o_.device;
  if (device < 0) {
    size_t best = 0;
    device = 0;
    for (size_t d = 0; d < traces.size() && d < (1u << 16); ++d) {
      if (traces.at(d).size() > best) {
        best = traces.at(d).size();
        device = static_cast<int>(d);
      }
    }
    if (best == 0) {
      std::map<int, size_t> count;
      for (const Seg& s : segs_) ++count[s.device];
      for (const auto& [d, c] : count) {
        if (c > best) {
          best = c;
          device = d;
        }
      }
    }
  }
  t.device = device;

  // The final state of the device.
  std::map<uint64_t, const Block*> active;  // by address
  uint64_t final_reserved = 0, final_allocated = 0;
  for (const Seg& s : segs_) {
    if (s.device != device) continue;
    ++t.figures.segments;
    if (!AddChecked(&final_reserved, s.total)) return Error{"snapshot: segment sizes overflow"};
    for (const Block& b : s.blocks) {
      if (!b.active) continue;
      if (!AddChecked(&final_allocated, b.size)) return Error{"snapshot: block sizes overflow"};
      active[b.addr] = &b;
    }
  }
  t.figures.final_reserved = final_reserved;
  t.figures.final_allocated = final_allocated;

  PickleRef trace;
  if (static_cast<size_t>(device) < traces.size()) trace = traces.at(static_cast<size_t>(device));
  if (trace.valid() && !trace.is(PickleKind::kList) && !trace.is(PickleKind::kTuple)) {
    return Error{fmt::format("snapshot: device_traces[{}] is not a list", device)};
  }
  const size_t n = trace.size();
  if (!Visit(n)) return OverWork();
  t.figures.has_trace = n > 0;
  t.figures.trace_entries = n;

  std::vector<Span> spans;                    // every allocation: recorded and from before
  std::unordered_map<uint64_t, size_t> live;  // address -> span of a live allocation
  int64_t allocs = 0;
  uint64_t segment_in = 0, segment_out = 0;  // recorded segment allocs/maps, frees/unmaps
  std::set<uint64_t> pending;                // frees requested, not completed yet

  auto new_span = [&](uint64_t addr, uint64_t size, PickleRef frames, std::string_view category,
                      int64_t order) -> bool {
    Span s;
    s.a.order = order;
    s.a.addr = addr;
    s.a.size = size;
    s.a.rounded = Rounded(size);
    s.a.category = Printable(std::string(category), 64);
    s.born = order < 0 ? 0 : order + 1;
    if (!Describe(frames, &s.a)) return false;
    spans.push_back(std::move(s));
    return true;
  };

  if (n > 0) {
    // Pass 1: the allocations and what the segment entries add up to.
    for (size_t i = 0; i < n; ++i) {
      PickleRef e = trace.at(i);
      if (!e.is(PickleKind::kDict)) {
        return Error{fmt::format("snapshot: device_traces[{}][{}] is not a dict", device, i)};
      }
      if (!Visit(e.size())) return OverWork();
      std::string_view action = e.get("action").str();
      auto size = U64(e, "size");
      auto addr = U64(e, action == "oom" ? "device_free" : "addr");
      if (action == "alloc" || action == "free_requested" || action == "free_completed" ||
          action == "segment_alloc" || action == "segment_free" || action == "segment_map" ||
          action == "segment_unmap") {
        if (!size || !addr) {
          return Error{fmt::format(
              "snapshot: device_traces[{}][{}] ({}) has no non-negative 'addr' and 'size'", device,
              i, Printable(std::string(action), 40))};
        }
      }
      if (action == "alloc") {
        if (auto it = live.find(*addr); it != live.end()) {
          // Allocated again without a recorded free (entries dropped): the old one ends.
          spans[it->second].died = allocs + 1;
        }
        if (!new_span(*addr, *size, e.get("frames"), e.get("category").str(), allocs)) {
          return OverWork();
        }
        live[*addr] = spans.size() - 1;
        ++allocs;
      } else if (action == "free_completed" && pending.erase(*addr)) {
        // The completion of a free already requested: memory_allocated() dropped then.
      } else if (action == "free_requested" || action == "free_completed") {
        auto it = live.find(*addr);
        if (it != live.end()) {
          spans[it->second].died = allocs + 1;
          live.erase(it);
        } else {
          // Freed without a recorded alloc: alive since before the recording.
          if (!new_span(*addr, *size, e.get("frames"), "", -1)) return OverWork();
          spans.back().died = allocs + 1;
        }
        if (action == "free_requested") pending.insert(*addr);
      } else if (action == "segment_alloc" || action == "segment_map") {
        if (!AddChecked(&segment_in, *size)) return Error{"snapshot: segment sizes overflow"};
      } else if (action == "segment_free" || action == "segment_unmap") {
        if (!AddChecked(&segment_out, *size)) return Error{"snapshot: segment sizes overflow"};
      } else if (action == "oom") {
        t.notes.push_back(fmt::format(
            "the run went out of memory after {} recorded allocations: a request of {} bytes "
            "with {} bytes free on the device",
            allocs, size.value_or(0), addr.value_or(0)));
      }
    }
    // Active blocks of the final segments that no live recorded alloc made: alive throughout.
    for (const auto& [addr, b] : active) {
      if (live.count(addr)) continue;
      if (!new_span(addr, b->requested, b->frames, "", -1)) return OverWork();
    }
  } else {
    for (const auto& [addr, b] : active) {
      if (!new_span(addr, b->requested, b->frames, "", -1)) return OverWork();
    }
  }

  // The timelines: point p alive = born <= p < died.
  const auto points = static_cast<size_t>(allocs) + 1;
  std::vector<uint64_t> add(points + 1, 0), sub(points + 1, 0), add_r(points + 1, 0),
      sub_r(points + 1, 0);
  for (const Span& s : spans) {
    auto b = static_cast<size_t>(s.born);
    bool ok = AddChecked(&add[b], s.a.rounded) && AddChecked(&add_r[b], s.a.size);
    if (s.died < static_cast<int64_t>(points)) {
      ok = ok && AddChecked(&sub[static_cast<size_t>(s.died)], s.a.rounded) &&
           AddChecked(&sub_r[static_cast<size_t>(s.died)], s.a.size);
    }
    if (!ok) return Error{"snapshot: allocated bytes overflow"};
  }
  t.allocated.resize(points);
  uint64_t cur = 0, cur_r = 0;
  for (size_t p = 0; p < points; ++p) {
    // Sums of sizes that each fit in 64 bits; a hostile file may still overflow them.
    if (!AddChecked(&cur, add[p]) || !AddChecked(&cur_r, add_r[p])) {
      return Error{"snapshot: allocated bytes overflow"};
    }
    cur -= std::min(cur, sub[p]);
    cur_r -= std::min(cur_r, sub_r[p]);
    t.allocated[p] = cur;
    if (cur > t.figures.peak_allocated) {
      t.figures.peak_allocated = cur;
      t.figures.peak_point = static_cast<int64_t>(p);
    }
    t.figures.peak_requested = std::max(t.figures.peak_requested, cur_r);
  }

  // Reserved: back from the final segments to the start of the recording, then forward.
  uint64_t reserved = 0;
  if (n > 0) {
    uint64_t start = final_reserved;
    if (!AddChecked(&start, segment_out)) return Error{"snapshot: segment sizes overflow"};
    if (start < segment_in) {
      t.notes.push_back(
          "the recorded segment allocations exceed the final segments and the recorded frees "
          "(entries dropped from the trace?): reserved bytes start at 0");
      start = 0;
    } else {
      start -= segment_in;
    }
    reserved = start;
    t.figures.peak_reserved = reserved;
    for (size_t i = 0; i < n; ++i) {
      PickleRef e = trace.at(i);
      std::string_view action = e.get("action").str();
      uint64_t size = U64(e, "size").value_or(0);
      if (action == "segment_alloc" || action == "segment_map") {
        reserved += size;  // bounded by start + segment_in, checked above
      } else if (action == "segment_free" || action == "segment_unmap") {
        reserved -= std::min(reserved, size);
      }
      t.figures.peak_reserved = std::max(t.figures.peak_reserved, reserved);
    }
  } else {
    t.figures.peak_reserved = final_reserved;
  }

  t.figures.allocations = static_cast<uint64_t>(allocs);
  for (const Span& s : spans) {
    if (s.a.order >= 0) t.allocations.push_back(s.a);
    if (s.born <= t.figures.peak_point && t.figures.peak_point < s.died) {
      t.at_peak.push_back(s.a);
      t.figures.alive_at_peak_bytes += s.a.rounded;
    }
  }
  std::stable_sort(t.allocations.begin(), t.allocations.end(),
                   [](const auto& a, const auto& b) { return a.order < b.order; });
  std::stable_sort(t.at_peak.begin(), t.at_peak.end(), [](const auto& a, const auto& b) {
    return a.rounded != b.rounded ? a.rounded > b.rounded : a.order < b.order;
  });
  t.figures.alive_at_peak = t.at_peak.size();
  if (n == 0) t.notes.push_back("no device trace: the figures are the final segments");
  return t;
}

}  // namespace

Result<SnapshotTimeline> ReadSnapshotTimeline(PickleRef root,
                                              const SnapshotCompareOptions& options) {
  return Reader(options).Read(root);
}

namespace {

// Shared words over the smaller set: a predicted frame names a tensor, its op and module in a
// few words, a real stack has many more; all of the few found there is a full match.
double ScopeScore(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  if (a.empty() || b.empty()) return 0;
  size_t i = 0, k = 0, shared = 0;
  while (i < a.size() && k < b.size()) {
    if (a[i] == b[k]) {
      ++shared;
      ++i;
      ++k;
    } else if (a[i] < b[k]) {
      ++i;
    } else {
      ++k;
    }
  }
  return static_cast<double>(shared) / static_cast<double>(std::min(a.size(), b.size()));
}

// Where an allocation falls in its run, 0 to 1 (runs record different numbers of allocs).
double Position(const SnapshotAllocation& a, uint64_t allocations) {
  if (a.order < 0 || allocations == 0) return -1;
  return static_cast<double>(a.order) / static_cast<double>(allocations);
}

// Candidates looked at per real tensor and direction: identical layers make many same-size
// candidates, and the nearest by position are the ones that can win the tie-break anyway.
constexpr size_t kWindow = 256;

// Predicted tensors not matched yet, by (rounded size, position in the run); a match is
// erased, so later searches never walk over taken candidates.
class Matcher {
 public:
  Matcher(const SnapshotTimeline& real, const SnapshotTimeline& pred) : real_(real), pred_(pred) {
    for (size_t i = 0; i < pred.at_peak.size(); ++i) {
      free_.insert(
          {pred.at_peak[i].rounded, Position(pred.at_peak[i], pred.figures.allocations), i});
    }
  }

  // The best free candidate for r among predicted sizes in [lo, hi], or -1: most shared
  // words, then the nearest size, then the nearest position.
  long Best(const SnapshotAllocation& r, uint64_t lo, uint64_t hi, double* score) const {
    const double pos = Position(r, real_.figures.allocations);
    long best = -1;
    double best_score = -1, best_dist = 0;
    uint64_t best_size_diff = 0;
    auto consider = [&](const Key& k) {
      const SnapshotAllocation& p = pred_.at_peak[std::get<2>(k)];
      double s = ScopeScore(r.words, p.words);
      double pp = std::get<1>(k);
      double dist = pos < 0 || pp < 0 ? (pos == pp ? 0 : 2) : std::fabs(pos - pp);
      uint64_t size_diff = p.rounded > r.rounded ? p.rounded - r.rounded : r.rounded - p.rounded;
      bool better = best < 0 || s > best_score ||
                    (s == best_score && (size_diff < best_size_diff ||
                                         (size_diff == best_size_diff && dist < best_dist)));
      if (better) {
        best = static_cast<long>(std::get<2>(k));
        best_score = s;
        best_dist = dist;
        best_size_diff = size_diff;
      }
    };
    if (lo == hi) {
      // One size: walk out from r's position both ways.
      auto center = free_.lower_bound({lo, pos, 0});
      size_t n = 0;
      for (auto it = center; it != free_.end() && std::get<0>(*it) == lo && n < kWindow;
           ++it, ++n) {
        consider(*it);
      }
      n = 0;
      for (auto it = center; it != free_.begin() && n < kWindow; ++n) {
        --it;
        if (std::get<0>(*it) != lo) break;
        consider(*it);
      }
    } else {
      size_t n = 0;
      for (auto it = free_.lower_bound({lo, -2.0, 0});
           it != free_.end() && std::get<0>(*it) <= hi && n < 8 * kWindow; ++it, ++n) {
        consider(*it);
      }
    }
    *score = best_score < 0 ? 0 : best_score;
    return best;
  }
  void Take(long i) {
    const SnapshotAllocation& p = pred_.at_peak[static_cast<size_t>(i)];
    free_.erase({p.rounded, Position(p, pred_.figures.allocations), static_cast<size_t>(i)});
  }
  bool taken(size_t i) const {
    const SnapshotAllocation& p = pred_.at_peak[i];
    return !free_.count({p.rounded, Position(p, pred_.figures.allocations), i});
  }

 private:
  using Key = std::tuple<uint64_t, double, size_t>;
  const SnapshotTimeline& real_;
  const SnapshotTimeline& pred_;
  std::set<Key> free_;
};

SnapshotComparison::Divergence At(const SnapshotTimeline& real, const SnapshotTimeline& pred,
                                  int64_t point) {
  SnapshotComparison::Divergence d;
  d.point = point;
  auto p = static_cast<size_t>(point);
  d.real_bytes = p < real.allocated.size() ? real.allocated[p] : real.allocated.back();
  d.predicted_bytes = p < pred.allocated.size() ? pred.allocated[p] : pred.allocated.back();
  if (point >= 1 && p - 1 < real.allocations.size()) d.real_alloc = real.allocations[p - 1];
  if (point >= 1 && p - 1 < pred.allocations.size()) d.predicted_alloc = pred.allocations[p - 1];
  return d;
}

}  // namespace

Result<SnapshotComparison> CompareSnapshots(PickleRef real, PickleRef predicted,
                                            const SnapshotCompareOptions& options) {
  if (!(options.divergence_fraction >= 0) || !(options.size_tolerance >= 0) ||
      options.size_tolerance >= 1) {
    return Error{"compare: the divergence fraction must be >= 0 and the size tolerance in [0, 1)"};
  }
  auto r = ReadSnapshotTimeline(real, options);
  if (!r) return Error{"real snapshot: " + r.error().message};
  auto p = ReadSnapshotTimeline(predicted, options);
  if (!p) return Error{"predicted snapshot: " + p.error().message};
  SnapshotComparison c;
  c.real = r->figures;
  c.predicted = p->figures;
  c.max_rows = options.max_rows;
  c.divergence_fraction = options.divergence_fraction;
  for (const std::string& n : r->notes) c.notes.push_back("real: " + n);
  for (const std::string& n : p->notes) c.notes.push_back("predicted: " + n);

  const uint64_t larger = std::max(c.real.peak_allocated, c.predicted.peak_allocated);
  c.divergence_threshold_bytes =
      static_cast<uint64_t>(std::floor(options.divergence_fraction * static_cast<double>(larger)));
  const size_t common = std::min(r->allocated.size(), p->allocated.size());
  for (size_t k = 0; k < common; ++k) {
    uint64_t a = r->allocated[k], b = p->allocated[k];
    if ((a > b ? a - b : b - a) > c.divergence_threshold_bytes) {
      c.divergence = At(*r, *p, static_cast<int64_t>(k));
      break;
    }
  }
  const size_t common_allocs = std::min(r->allocations.size(), p->allocations.size());
  for (size_t k = 0; k < common_allocs; ++k) {
    if (r->allocations[k].rounded != p->allocations[k].rounded) {
      c.first_size_mismatch = At(*r, *p, static_cast<int64_t>(k + 1));
      break;
    }
  }
  if (!c.first_size_mismatch && r->allocations.size() != p->allocations.size()) {
    c.first_size_mismatch = At(*r, *p, static_cast<int64_t>(common_allocs + 1));
  }
  if (r->allocations.size() != p->allocations.size()) {
    c.notes.push_back(fmt::format("the real run recorded {} allocations, the prediction {}",
                                  r->allocations.size(), p->allocations.size()));
  }
  if (r->figures.has_trace != p->figures.has_trace) {
    c.notes.push_back(
        "only one snapshot has a device trace: peaks compare a timeline with a "
        "final state");
  }

  // Tensors at the peaks: equal rounded sizes first, then sizes within the tolerance.
  Matcher m(*r, *p);
  c.at_peak.resize(r->at_peak.size());
  for (size_t i = 0; i < r->at_peak.size(); ++i) c.at_peak[i].real = r->at_peak[i];
  for (int pass = 0; pass < 2; ++pass) {
    for (SnapshotTensorMatch& t : c.at_peak) {
      if (t.predicted) continue;
      uint64_t lo = t.real.rounded, hi = t.real.rounded;
      if (pass == 1) {
        // |r - p| <= tol * max(r, p): p in [r (1 - tol), r / (1 - tol)].
        const double rr = static_cast<double>(t.real.rounded);
        lo = static_cast<uint64_t>(std::ceil(rr * (1 - options.size_tolerance)));
        const double h = std::floor(rr / (1 - options.size_tolerance));
        hi = h >= 1.8e19 ? std::numeric_limits<uint64_t>::max() : static_cast<uint64_t>(h);
      }
      double score = 0;
      long best = m.Best(t.real, lo, hi, &score);
      if (best < 0) continue;
      m.Take(best);
      t.predicted = p->at_peak[static_cast<size_t>(best)];
      t.exact_size = t.predicted->rounded == t.real.rounded;
      t.scope_score = score;
    }
  }
  for (const SnapshotTensorMatch& t : c.at_peak) {
    if (t.predicted) {
      ++c.matched;
      c.matched_bytes += t.real.rounded;
    } else {
      ++c.real_unmatched;
      c.real_unmatched_bytes += t.real.rounded;
    }
  }
  for (size_t i = 0; i < p->at_peak.size(); ++i) {
    if (m.taken(i)) continue;
    c.predicted_unmatched.push_back(p->at_peak[i]);
    c.predicted_unmatched_bytes += p->at_peak[i].rounded;
  }
  return c;
}

Result<SnapshotComparison> CompareSnapshotWithTrace(PickleRef real, const Trace& trace,
                                                    const MemorySnapshotOptions& snapshot,
                                                    const SnapshotCompareOptions& options) {
  std::ostringstream out;
  auto written = WriteMemorySnapshot(trace, snapshot, out);
  if (!written) return written.error();
  auto doc = ParsePickle(out.str());
  if (!doc) return Error{"the predicted snapshot: " + doc.error().message};
  auto c = CompareSnapshots(real, doc->root(), options);
  if (!c) return c;
  c->model_max_allocated = written->max_allocated;
  c->model_max_reserved = written->max_reserved;
  return c;
}

namespace {

nlohmann::json FiguresJson(const SnapshotFigures& f) {
  return {{"has_trace", f.has_trace},
          {"trace_entries", f.trace_entries},
          {"allocations", f.allocations},
          {"peak_allocated_bytes", f.peak_allocated},
          {"peak_requested_bytes", f.peak_requested},
          {"peak_reserved_bytes", f.peak_reserved},
          {"peak_point", f.peak_point},
          {"final_allocated_bytes", f.final_allocated},
          {"final_reserved_bytes", f.final_reserved},
          {"segments", f.segments},
          {"alive_at_peak", f.alive_at_peak},
          {"alive_at_peak_bytes", f.alive_at_peak_bytes}};
}

nlohmann::json AllocJson(const SnapshotAllocation& a) {
  return {{"order", a.order},     {"address", a.addr},      {"size", a.size},
          {"rounded", a.rounded}, {"category", a.category}, {"label", a.label}};
}

nlohmann::json OptAllocJson(const std::optional<SnapshotAllocation>& a) {
  return a ? AllocJson(*a) : nlohmann::json(nullptr);
}

nlohmann::json DivergenceJson(const std::optional<SnapshotComparison::Divergence>& d) {
  if (!d) return nullptr;
  return {{"point", d->point},
          {"real_bytes", d->real_bytes},
          {"predicted_bytes", d->predicted_bytes},
          {"real_alloc", OptAllocJson(d->real_alloc)},
          {"predicted_alloc", OptAllocJson(d->predicted_alloc)}};
}

std::string Mib(uint64_t bytes) {
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1 << 20));
}

std::string Signed(uint64_t real, uint64_t predicted) {
  // fmt, not "+" + std::string: GCC 12 warns (-Wrestrict) falsely on the latter.
  return fmt::format("{}{}", predicted >= real ? '+' : '-',
                     Mib(predicted >= real ? predicted - real : real - predicted));
}

}  // namespace

nlohmann::json SnapshotComparisonJson(const SnapshotComparison& c) {
  nlohmann::json j;
  j["real"] = FiguresJson(c.real);
  j["predicted"] = FiguresJson(c.predicted);
  j["model"] = {
      {"max_allocated_bytes",
       c.model_max_allocated ? nlohmann::json(*c.model_max_allocated) : nlohmann::json(nullptr)},
      {"max_reserved_bytes",
       c.model_max_reserved ? nlohmann::json(*c.model_max_reserved) : nlohmann::json(nullptr)}};
  j["divergence_fraction"] = c.divergence_fraction;
  j["divergence_threshold_bytes"] = c.divergence_threshold_bytes;
  j["divergence"] = DivergenceJson(c.divergence);
  j["first_size_mismatch"] = DivergenceJson(c.first_size_mismatch);
  nlohmann::json rows = nlohmann::json::array();
  for (size_t i = 0; i < c.at_peak.size() && i < c.max_rows; ++i) {
    const SnapshotTensorMatch& t = c.at_peak[i];
    rows.push_back({{"real", AllocJson(t.real)},
                    {"predicted", OptAllocJson(t.predicted)},
                    {"exact_size", t.exact_size},
                    {"scope_score", t.scope_score}});
  }
  nlohmann::json unmatched = nlohmann::json::array();
  for (size_t i = 0; i < c.predicted_unmatched.size() && i < c.max_rows; ++i) {
    unmatched.push_back(AllocJson(c.predicted_unmatched[i]));
  }
  j["at_peak"] = {{"real_tensors", c.at_peak.size()},
                  {"matched", c.matched},
                  {"matched_bytes", c.matched_bytes},
                  {"real_unmatched", c.real_unmatched},
                  {"real_unmatched_bytes", c.real_unmatched_bytes},
                  {"predicted_unmatched", c.predicted_unmatched.size()},
                  {"predicted_unmatched_bytes", c.predicted_unmatched_bytes},
                  {"rows", rows},
                  {"predicted_unmatched_rows", unmatched}};
  j["notes"] = c.notes;
  return j;
}

std::string RenderSnapshotComparison(const SnapshotComparison& c) {
  std::string s;
  s += fmt::format("{:<22} {:>14} {:>14} {:>14}\n", "", "real", "predicted", "difference");
  auto row = [&](const char* name, uint64_t a, uint64_t b) {
    s += fmt::format("{:<22} {:>14} {:>14} {:>14}\n", name, Mib(a), Mib(b), Signed(a, b));
  };
  row("peak allocated", c.real.peak_allocated, c.predicted.peak_allocated);
  row("peak reserved", c.real.peak_reserved, c.predicted.peak_reserved);
  row("final allocated", c.real.final_allocated, c.predicted.final_allocated);
  row("final reserved", c.real.final_reserved, c.predicted.final_reserved);
  row("alive at peak", c.real.alive_at_peak_bytes, c.predicted.alive_at_peak_bytes);
  s += fmt::format("{:<22} {:>14} {:>14}\n", "allocations", c.real.allocations,
                   c.predicted.allocations);
  if (c.model_max_allocated && c.model_max_reserved) {
    s += fmt::format("allocator model: max allocated {}, max reserved {}\n",
                     Mib(*c.model_max_allocated), Mib(*c.model_max_reserved));
  }
  if (c.divergence) {
    const auto& d = *c.divergence;
    s += fmt::format("timelines part at allocation {} (by more than {}): real {}, predicted {}\n",
                     d.point, Mib(c.divergence_threshold_bytes), Mib(d.real_bytes),
                     Mib(d.predicted_bytes));
    if (d.real_alloc) s += "  real:      " + d.real_alloc->label + "\n";
    if (d.predicted_alloc) s += "  predicted: " + d.predicted_alloc->label + "\n";
  } else {
    s += fmt::format("the allocated timelines stay within {} of each other\n",
                     Mib(c.divergence_threshold_bytes));
  }
  if (c.first_size_mismatch) {
    const auto& d = *c.first_size_mismatch;
    s += fmt::format("first allocation of another size: #{}", d.point);
    if (d.real_alloc)
      s += fmt::format(", real {} ({})", Mib(d.real_alloc->rounded), d.real_alloc->label);
    if (d.predicted_alloc) {
      s += fmt::format(", predicted {} ({})", Mib(d.predicted_alloc->rounded),
                       d.predicted_alloc->label);
    }
    s += "\n";
  }
  s += fmt::format(
      "at the real peak: {} tensors, {} matched ({}), {} unmatched ({}); {} predicted tensors "
      "unmatched ({})\n",
      c.at_peak.size(), c.matched, Mib(c.matched_bytes), c.real_unmatched,
      Mib(c.real_unmatched_bytes), c.predicted_unmatched.size(), Mib(c.predicted_unmatched_bytes));
  for (size_t i = 0; i < c.at_peak.size() && i < c.max_rows; ++i) {
    const SnapshotTensorMatch& t = c.at_peak[i];
    s += fmt::format("  {:>12}  {}\n", Mib(t.real.rounded),
                     t.real.label.empty() ? "(no frames)" : t.real.label);
    if (t.predicted) {
      s += fmt::format(
          "  {:>12}  = {}{}\n", t.exact_size ? "same size" : Mib(t.predicted->rounded),
          t.predicted->label.empty() ? "(no frames)" : t.predicted->label,
          t.scope_score > 0 ? fmt::format(" (scope {:.0f}%)", 100 * t.scope_score) : "");
    } else {
      s += fmt::format("  {:>12}  no predicted tensor\n", "");
    }
  }
  for (const std::string& n : c.notes) s += "note: " + n + "\n";
  return s;
}

}  // namespace vramsim
