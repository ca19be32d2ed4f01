// Test-only tool (until `vramsim estimate --snapshot` is wired): writes the predicted step of
// an example as a PyTorch memory snapshot and prints the allocator model's figures as JSON,
// for validation/snapshot_check.py to hold torch's own readers against.
//   snapshot_writer MODEL.onnx OUT.pickle [--dim NAME=VALUE]... [--no-warmup] [--gpu NAME]
#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "devices/devices.h"
#include "engine/estimate.h"
#include "reports/memory_snapshot.h"

int main(int argc, char** argv) {
  using namespace vramsim;
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: snapshot_writer MODEL.onnx OUT.pickle [--dim NAME=VALUE]... "
                 "[--no-warmup] [--gpu NAME]\n");
    return 2;
  }
  std::vector<std::string> dim_specs;
  MemorySnapshotOptions so;
  for (int i = 3; i < argc; ++i) {
    if (std::strcmp(argv[i], "--dim") == 0 && i + 1 < argc) {
      dim_specs.push_back(argv[++i]);
    } else if (std::strcmp(argv[i], "--no-warmup") == 0) {
      so.replay.warmup_step = false;
    } else if (std::strcmp(argv[i], "--gpu") == 0 && i + 1 < argc) {
      auto d = FindDevice(argv[++i]);
      if (!d) {
        std::fprintf(stderr, "snapshot_writer: %s\n", d.error().message.c_str());
        return 2;
      }
      so.replay.extra = LibraryWorkspaces(*d);
    } else {
      std::fprintf(stderr, "snapshot_writer: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  std::map<std::string, int64_t> dims;
  if (auto s = ParseDimSpecs(dim_specs, &dims); !s) {
    std::fprintf(stderr, "snapshot_writer: %s\n", s.message().c_str());
    return 2;
  }
  auto options = ParseEstimateFlags(EstimateFlags{});
  if (!options) {
    std::fprintf(stderr, "snapshot_writer: %s\n", options.error().message.c_str());
    return 2;
  }
  auto e = EstimateModel(argv[1], dims, *options);
  if (!e) {
    std::fprintf(stderr, "snapshot_writer: %s\n", e.error().message.c_str());
    return 2;
  }
  auto r = ReplayCachingAllocator(e->trace, so.replay);
  if (!r) {
    std::fprintf(stderr, "snapshot_writer: %s\n", r.error().message.c_str());
    return 2;
  }
  auto s = WriteMemorySnapshotFile(e->trace, so, argv[2]);
  if (!s) {
    std::fprintf(stderr, "snapshot_writer: %s\n", s.error().message.c_str());
    return 2;
  }
  nlohmann::json j = {
      {"max_allocated", r->max_allocated},   {"max_requested", r->max_requested},
      {"max_reserved", r->max_reserved},     {"final_allocated", s->final_allocated},
      {"final_reserved", s->final_reserved}, {"peak_bytes", e->peak.peak_bytes},
      {"trace_entries", s->trace_entries},   {"segments", s->segments},
      {"warmup_applied", s->warmup_applied}, {"bytes_written", s->bytes_written}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}
