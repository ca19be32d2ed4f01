#!/usr/bin/env python3
"""Mutation run over every bundled export: no input may crash vramsim.

Makes --count mutants (default 10000) of examples/*.onnx and validation/models/*.onnx, round
robin, with a seeded deterministic RNG (mutant i depends only on --seed and i): random bit
flips, truncations, insertions of random bytes and duplicated chunks, one to three at a time.
Runs `BIN inspect MUTANT --dim ...` and `BIN estimate MUTANT --dim ...` on each, binding only
the symbolic dims the original model declares (batch=2, seq=8, any other 4; read with the onnx
module). BIN is meant to be an ASan + UBSan build:

  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DVRAMSIM_SANITIZE=ON \\
    -DVRAMSIM_BENCH=OFF && cmake --build build-asan --target vramsim

A run fails when it exits other than 0 or 2, runs past --timeout, prints any sanitizer report
(ASAN/UBSAN exitcode 99), or exits 2 without exactly one printable line on stderr. Failing
mutants and their output are saved under --failures; the exit status is 1 if any run failed.

  python3 scripts/mutate.py [--count N] [--seed S] [--bin BIN] [--jobs J] [--timeout SEC]
"""
import argparse
import concurrent.futures
import glob
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "UndefinedBehaviorSanitizer", "SUMMARY: AddressSanitizer", "==ERROR:")
DIM_VALUES = {"batch": 2, "seq": 8}


def declared_dims(path):
    """The dim_params of the model's graph inputs (sorted), from the unmutated original."""
    import onnx  # python3-onnx

    model = onnx.load(path, load_external_data=False)
    names = set()
    for vi in model.graph.input:
        t = vi.type
        if t.HasField("tensor_type") and t.tensor_type.HasField("shape"):
            for d in t.tensor_type.shape.dim:
                if d.HasField("dim_param") and d.dim_param:
                    names.add(d.dim_param)
    return sorted(names)


def mutate(data, rng):
    """One to three random edits; returns (bytes, kind)."""
    data = bytearray(data)
    kinds = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        kind = rng.choice(("flip", "truncate", "insert", "duplicate"))
        n = len(data)
        if kind == "flip" and n:
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif kind == "truncate" and n:
            del data[rng.randrange(n):]
        elif kind == "insert":
            pos = rng.randint(0, n)
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        elif kind == "duplicate" and n:
            start = rng.randrange(n)
            chunk = data[start:start + rng.randint(1, 4096)]
            pos = rng.randint(0, n)
            data[pos:pos] = chunk
        kinds.append(kind)
    return bytes(data), "+".join(kinds)


def check(rc, stderr, timed_out):
    """The reason a run failed, or None."""
    if timed_out:
        return "timeout"
    text = stderr.decode("utf-8", "replace")
    if rc == 99 or any(m in text for m in SANITIZER_MARKS):
        return "sanitizer report"
    if rc not in (0, 2):
        return f"exit {rc}"
    if rc == 2:
        try:
            line = stderr.decode("utf-8")
        except UnicodeDecodeError:
            return "stderr is not UTF-8"
        if not line.endswith("\n") or "\n" in line[:-1]:
            return f"stderr has {line.count(chr(10))} newlines (want exactly one line)"
        if not line[:-1] or not line[:-1].isprintable():
            return "stderr line is empty or has unprintable characters"
    return None


def main():
    try:
        import onnx  # noqa: F401
    except ImportError:
        # python3-onnx is Debian's; another python3 first on PATH (pyenv, a venv) lacks it.
        if os.path.exists("/usr/bin/python3") and sys.executable != "/usr/bin/python3":
            os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
        sys.exit("mutate: needs the onnx module (apt-get install python3-onnx)")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=10000, help="mutants in total")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build-asan", "cli", "vramsim"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per run")
    ap.add_argument("--failures", default=os.path.join(ROOT, "build-mut", "mutate-failures"))
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"mutate: no binary {args.bin} (see --help for the ASan build)")

    originals = []
    seen = set()
    for p in sorted(glob.glob(os.path.join(ROOT, "examples", "*.onnx")) +
                    glob.glob(os.path.join(ROOT, "validation", "models", "*.onnx"))):
        data = open(p, "rb").read()
        h = hashlib.sha1(data).digest()
        if h in seen:
            continue
        seen.add(h)
        dims = []
        for name in declared_dims(p):
            dims += ["--dim", f"{name}={DIM_VALUES.get(name, 4)}"]
        originals.append((os.path.relpath(p, ROOT), data, dims))
    if not originals:
        sys.exit("mutate: no exports found")

    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "exitcode=99:halt_on_error=1:detect_leaks=1:abort_on_error=0"
    env["UBSAN_OPTIONS"] = "exitcode=99:halt_on_error=1:print_stacktrace=1"
    workdir = tempfile.mkdtemp(prefix="vramsim-mutate-")
    lock = threading.Lock()
    counts = {0: 0, 2: 0}
    failures = []
    done = [0]

    def run_one(i):
        name, data, dims = originals[i % len(originals)]
        rng = random.Random(f"{args.seed}:{i}")
        mutant, kind = mutate(data, rng)
        path = os.path.join(workdir, f"m{i}.onnx")
        with open(path, "wb") as f:
            f.write(mutant)
        results = []
        for sub in ("inspect", "estimate"):
            cmd = [args.bin, sub, path] + dims
            # A timeout is retried once with three times the limit: on a loaded machine a run
            # can stall (swapping) without being slow itself.
            for limit in (args.timeout, 3 * args.timeout):
                timed_out = False
                try:
                    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                       env=env, timeout=limit, cwd=workdir)
                    rc, err = p.returncode, p.stderr
                    break
                except subprocess.TimeoutExpired as e:
                    rc, err, timed_out = -9, e.stderr or b"", True
            results.append((sub, cmd, rc, err, check(rc, err, timed_out)))
        os.unlink(path)
        with lock:
            for sub, cmd, rc, err, why in results:
                if why is None:
                    counts[rc] += 1
                    continue
                os.makedirs(args.failures, exist_ok=True)
                base = os.path.join(args.failures,
                                    f"{os.path.basename(name)[:-5]}-{i}-{sub}-{kind}")
                with open(base + ".onnx", "wb") as f:
                    f.write(mutant)
                with open(base + ".txt", "w") as f:
                    f.write(f"{' '.join(cmd)}\nexit {rc}: {why}\n--- stderr ---\n")
                    f.write(err[:20000].decode("utf-8", "replace"))
                failures.append((base, why))
                print(f"mutate: FAIL {base}.onnx ({name}, {kind}, {sub}): {why}", flush=True)
            done[0] += 1
            if done[0] % 500 == 0:
                print(f"mutate: {done[0]}/{args.count} mutants, {len(failures)} failed",
                      flush=True)

    try:
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            for fut in [pool.submit(run_one, i) for i in range(args.count)]:
                fut.result()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    runs = 2 * args.count
    print(f"mutate: {args.count} mutants, {runs} runs: {len(failures)} failed "
          f"(exit 0: {counts[0]}, exit 2: {counts[2]})")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
