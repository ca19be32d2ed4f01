#!/usr/bin/env python3
"""Writes tests/data/snapshot/*.pickle: a small CUDA memory snapshot laid out exactly as
torch.cuda.memory._dump_snapshot() writes it (torch 2.1+; torch/csrc/cuda/memory_snapshot.cpp
_memory_snapshot_pickled() builds the value, _dump_snapshot() pickles it with Python's pickle),
for tests/snapshot_test.cc. No torch needed: the value is built by hand.

What follows PyTorch's writer:
- {"segments", "device_traces", "allocator_settings"}; one trace list per device (device 1
  here has none); segments sorted by address.
- segment keys in insertion order: device, address, total_size, allocated_size, active_size,
  requested_size, stream, segment_type, segment_pool_id (a tuple), is_expandable, blocks,
  then frames (inserted last when the segment has a context).
- block keys: address, size, requested_size, state ("active_allocated",
  "active_pending_free", "inactive"), frames ([] without a context).
- trace entries: action, addr (device_free for "oom"), size, stream, time_us, then frames
  only when a context was recorded (never a "category": PyTorch writes none).
- frames: dicts {"name", "filename", "line"}, one dict object shared by every traceback that
  holds the frame (ivalue_symbolize dedups them), so the pickle memo references them.

The figures the test expects are worked out in tests/snapshot_test.cc from the values below.
    python3 validation/make_snapshot_fixture.py [--out tests/data/snapshot]
"""
import argparse
import os
import pickle

MiB = 1 << 20
A0 = 0x7F0000000000  # small-pool segment, 2 MiB
A1 = A0 + 2 * MiB  # large-pool segment, 20 MiB, made during the recording
A2 = A1 + 20 * MiB  # 12 MiB segment from before the recording, freed during it


def frame(filename, line, name):
    return {"name": name, "filename": filename, "line": line}


LINEAR = frame("/usr/lib/python3/dist-packages/torch/nn/modules/linear.py", 114, "forward")
RELU = frame("/usr/lib/python3/dist-packages/torch/nn/functional.py", 1457, "relu")
STEP = frame("train.py", 42, "train_step")
DEL = frame("train.py", 50, "train_step")
# Tracebacks (innermost first); the same frame dicts are shared between them.
TB_LINEAR = [LINEAR, STEP]
TB_RELU = [RELU, STEP]
TB_DEL = [DEL]


def block(address, size, requested, state, frames):
    return {"address": address, "size": size, "requested_size": requested, "state": state,
            "frames": frames}


def segment(address, total, seg_type, blocks, frames):
    allocated = sum(b["size"] for b in blocks if b["state"] == "active_allocated")
    active = sum(b["size"] for b in blocks if b["state"] != "inactive")
    requested = sum(b["requested_size"] for b in blocks if b["state"] != "inactive")
    s = {"device": 0, "address": address, "total_size": total, "allocated_size": allocated,
         "active_size": active, "requested_size": requested, "stream": 0,
         "segment_type": seg_type, "segment_pool_id": (0, 0), "is_expandable": False,
         "blocks": blocks}
    s["frames"] = frames  # inserted after the blocks when the segment has a context
    return s


def entry(action, addr, size, time_us, frames=None):
    e = {"action": action, "device_free" if action == "oom" else "addr": addr, "size": size,
         "stream": 0, "time_us": time_us}
    if frames is not None:
        e["frames"] = frames
    return e


def snapshot():
    segments = [
        segment(A0, 2 * MiB, "small", [
            # x: 4 bytes allocated before the recording started, alive throughout.
            block(A0, 512, 4, "active_allocated", []),
            # allocation #1 of the recording (1000 bytes).
            block(A0 + 512, 1024, 1000, "active_allocated", TB_RELU),
            # allocation #3 (512 bytes): freed, the free not completed (stream use).
            block(A0 + 1536, 512, 512, "active_pending_free", TB_RELU),
            block(A0 + 2048, 2 * MiB - 2048, 0, "inactive", []),
        ], []),
        segment(A1, 20 * MiB, "large", [
            block(A1, 4 * MiB, 4 * MiB, "active_allocated", TB_LINEAR),  # allocation #0
            block(A1 + 4 * MiB, 16 * MiB, 0, "inactive", []),
        ], TB_LINEAR),
    ]
    trace0 = [
        entry("segment_alloc", A1, 20 * MiB, 1000, TB_LINEAR),
        entry("alloc", A1, 4 * MiB, 1001, TB_LINEAR),
        entry("alloc", A0 + 512, 1000, 1002, TB_RELU),
        # A 2048 B temporary (#2) in L0's rest, freed at once (request, then completion).
        entry("alloc", A1 + 4 * MiB, 2048, 1003, TB_RELU),
        entry("free_requested", A1 + 4 * MiB, 2048, 1004, TB_RELU),
        entry("free_completed", A1 + 4 * MiB, 2048, 1005, TB_RELU),
        # "old": 8 MiB allocated before the recording, freed now (no alloc recorded).
        entry("free_requested", A2, 8 * MiB, 1006, TB_DEL),
        entry("free_completed", A2, 8 * MiB, 1007, TB_DEL),
        entry("alloc", A0 + 1536, 512, 1008, TB_RELU),  # #3
        entry("segment_free", A2, 12 * MiB, 1009, TB_DEL),  # torch.cuda.empty_cache()
        entry("free_requested", A0 + 1536, 512, 1010, TB_RELU),
        # A 1 GiB request that failed with 1 MiB free on the device; no context recorded.
        entry("oom", 1 * MiB, 1 << 30, 1011),
    ]
    settings = {
        "PYTORCH_CUDA_ALLOC_CONF": "",
        "max_split_size": -1,  # int64_t(SIZE_MAX)
        "garbage_collection_threshold": 0.0,
        "expandable_segments": False,
        "pinned_num_register_threads": 1,
        "release_lock_on_cudamalloc": False,
        "pinned_use_cuda_host_register": False,
        "roundup_power2_divisions": {str(1 << k): 0 for k in range(16)},
    }
    return {"segments": segments, "device_traces": [trace0, []], "allocator_settings": settings}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "data", "snapshot"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    s = snapshot()
    # Protocol 2: what torch's own Pickler writes (c10 _memory_snapshot_pickled()); protocol 4:
    # what torch.cuda.memory._dump_snapshot() writes (pickle.dump's default on Python 3.8+).
    for protocol in (2, 4):
        path = os.path.join(args.out, f"torch_snapshot_p{protocol}.pickle")
        with open(path, "wb") as f:
            pickle.dump(s, f, protocol=protocol)
        with open(path, "rb") as f:
            assert pickle.load(f) == s
        print(path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
