"""vramsim's Python API against its CLI: the same numbers, the same messages.

Each call runs `vramsim ... --json` (VRAMSIM_BIN, default build/cli/vramsim) and the binding
with the same options, and compares the whole JSON objects; errors must raise vramsim.Error
with the message the CLI prints after "vramsim: error: ".

  PYTHONPATH=build/python /usr/bin/python3 -m pytest -q python/tests/test_api.py
"""

import json
import os
import subprocess

import pytest

import vramsim

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("VRAMSIM_BIN", os.path.join(ROOT, "build", "cli", "vramsim"))
GPT = os.path.join(ROOT, "examples", "gpt.onnx")
RESNET = os.path.join(ROOT, "examples", "resnet18.onnx")


def cli(*args):
    r = subprocess.run([BIN, *args], capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def cli_json(*args):
    rc, out, err = cli(*args, "--json")
    assert rc == 0, err
    return json.loads(out)


def cli_error(*args):
    rc, out, err = cli(*args)
    assert rc != 0
    line = err.strip().splitlines()[-1]
    assert line.startswith("vramsim: error: "), err
    return line[len("vramsim: error: "):]


# (CLI flags, the same as keywords)
CASES = [
    (["--dim", "batch=8", "--dim", "seq=128"], {}),
    (["--dim", "batch=16", "--dim", "seq=128", "--optimizer", "adamw", "--precision", "amp-bf16",
      "--checkpoint", "h.0,h.1"],
     {"optimizer": "adamw", "precision": "amp-bf16", "checkpoint": ["h.0", "h.1"]}),
    (["--dim", "batch=8", "--dim", "seq=64", "--optimizer", "sgd", "--target", "torch-cpu",
      "--accum", "2", "--precision", "bf16", "--loss-precision", "model",
      "--torch-version", "1.13"],
     {"optimizer": "sgd", "target": "torch-cpu", "accum": 2, "precision": "bf16",
      "loss_precision": "model", "torch_version": "1.13"}),
    (["--dim", "batch=8", "--dim", "seq=128", "--freeze", "wte,wpe", "--data-parallel", "4",
      "--zero", "2"],
     {"freeze": ["wte", "wpe"], "data_parallel": 4, "zero": 2}),
    (["--dim", "batch=8", "--dim", "seq=128", "--tp", "2", "--sequence-parallel"],
     {"tensor_parallel": 2, "sequence_parallel": True}),
    (["--dim", "batch=8", "--dim", "seq=128", "--pp", "2", "--stages", "h.2", "--schedule",
      "gpipe", "--accum", "2", "--offload", "optimizer"],
     {"pipeline_parallel": 2, "stages": ["h.2"], "schedule": "gpipe", "accum": 2,
      "offload": "optimizer"}),
    (["--dim", "batch=8", "--dim", "seq=128", "--pp", "2", "--pp-stage", "1", "--accum", "4",
      "--data-parallel", "4", "--fsdp", "hybrid", "--gpus-per-node", "2"],
     {"pipeline_parallel": 2, "pipeline_stage": 1, "accum": 4, "data_parallel": 4,
      "fsdp": "hybrid", "gpus_per_node": 2}),
    (["--dim", "batch=8", "--dim", "seq=64", "--target", "torch-cpu", "--data-parallel", "4",
      "--zero", "1", "--zero-rank", "3"],
     {"target": "torch-cpu", "data_parallel": 4, "zero": 1, "zero_rank": 3}),
]


def dims_of(flags):
    return {k: int(v) for k, v in (flags[i + 1].split("=") for i, f in enumerate(flags)
                                    if f == "--dim")}


@pytest.mark.parametrize("flags,kwargs", CASES)
def test_estimate_matches_the_cli(flags, kwargs):
    expected = cli_json("estimate", GPT, *flags)
    got = vramsim.estimate(GPT, dims=dims_of(flags), **kwargs)
    assert got.to_dict() == expected
    assert got.peak_bytes == expected["peak_bytes"]
    assert got["breakdown"] == expected["breakdown"]
    assert isinstance(got.peak_bytes, int)


def test_resnet_estimate_and_inspect_match_the_cli():
    assert vramsim.estimate(RESNET, dims={"batch": 16}, optimizer="sgd").to_dict() == \
        cli_json("estimate", RESNET, "--dim", "batch=16", "--optimizer", "sgd")
    assert vramsim.inspect(RESNET, dims={"batch": 4}, trainable=["fc"]).to_dict() == \
        cli_json("inspect", RESNET, "--dim", "batch=4", "--trainable", "fc")


def test_fit_and_max_batch_match_the_cli():
    assert vramsim.fit(GPT, "t4", dims={"batch": 64, "seq": 256}).to_dict() == \
        cli_json("fit", GPT, "--gpu", "t4", "--dim", "batch=64", "--dim", "seq=256")
    assert vramsim.max_batch(GPT, "t4", dims={"seq": 256}, precision="amp-fp16").to_dict() == \
        cli_json("max-batch", GPT, "--gpu", "t4", "--dim", "seq=256", "--precision", "amp-fp16")


@pytest.mark.parametrize("flags,call", [
    (["estimate", GPT, "--dim", "batch=0", "--dim", "seq=8"],
     lambda: vramsim.estimate(GPT, dims={"batch": 0, "seq": 8})),
    (["estimate", GPT, "--dim", "batch=8"], lambda: vramsim.estimate(GPT, dims={"batch": 8})),
    (["estimate", GPT, "--dim", "batch=8", "--dim", "seq=8", "--precision", "fp8"],
     lambda: vramsim.estimate(GPT, dims={"batch": 8, "seq": 8}, precision="fp8")),
    (["estimate", GPT, "--dim", "batch=8", "--dim", "seq=8", "--freeze", "nothing.matches"],
     lambda: vramsim.estimate(GPT, dims={"batch": 8, "seq": 8}, freeze=["nothing.matches"])),
    (["estimate", os.path.join(ROOT, "no", "such.onnx"), "--dim", "batch=8"],
     lambda: vramsim.estimate(os.path.join(ROOT, "no", "such.onnx"), dims={"batch": 8})),
    (["fit", GPT, "--gpu", "nosuchgpu", "--dim", "batch=8", "--dim", "seq=8"],
     lambda: vramsim.fit(GPT, "nosuchgpu", dims={"batch": 8, "seq": 8})),
])
def test_errors_raise_with_the_clis_message(flags, call):
    message = cli_error(*flags)
    with pytest.raises(vramsim.Error) as e:
        call()
    assert str(e.value) == message


def test_bad_keywords_raise():
    with pytest.raises(vramsim.Error, match="unknown option 'optimiser'"):
        vramsim.estimate(GPT, dims={"batch": 8, "seq": 8}, optimiser="adam")
    with pytest.raises(vramsim.Error, match="accum"):
        vramsim.estimate(GPT, dims={"batch": 8, "seq": 8}, accum="two")
    with pytest.raises(vramsim.Error, match="not an integer"):
        vramsim.estimate(GPT, dims={"batch": 8.5, "seq": 8})


def test_reports_are_written(tmp_path):
    r = vramsim.estimate(GPT, dims={"batch": 4, "seq": 64})
    html, trace = tmp_path / "r.html", tmp_path / "t.json"
    r.write_html(html)
    r.write_trace(trace)
    assert "<html" in html.read_text()[:500].lower()
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e.get("ph") == "C" for e in events)  # the live-bytes counters
    with pytest.raises(vramsim.Error):
        r.write_html(tmp_path / "no" / "such" / "dir" / "r.html")


def without_timings(value):
    """The JSON without its wall-clock fields (*_ms), which differ from run to run."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if not k.endswith("_ms")}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def cli_json_rc(*args):
    rc, out, err = cli(*args, "--json")
    assert rc in (0, 1), err
    return rc, json.loads(out)


GPT_DIMS = {"batch": 16, "seq": 256}
GPT_FLAGS = ["--dim", "batch=16", "--dim", "seq=256"]


@pytest.mark.parametrize("flags,kwargs", [
    (["--budget-fraction", "0.65"], {"budget_fraction": 0.65}),
    (["--budget", "40MiB", "--optimizer", "adamw", "--precision", "amp-bf16"],
     {"budget": "40MiB", "optimizer": "adamw", "precision": "amp-bf16"}),
    (["--budget", "50000000", "--strategy", "dp", "--accum", "2"],
     {"budget_bytes": 50000000, "strategy": "dp", "accum": 2}),
])
def test_plan_matches_the_cli_on_gpt(flags, kwargs):
    rc, expected = cli_json_rc("plan", GPT, *GPT_FLAGS, *flags)
    got = vramsim.plan(GPT, dims=GPT_DIMS, **kwargs)
    assert without_timings(got.to_dict()) == without_timings(expected)
    assert got.fits == (rc == 0)
    assert got.checkpoint == expected["checkpoint"]


def test_plan_matches_the_cli_on_resnet_fitting_or_not():
    for fraction in (0.8, 0.5):  # resnet18 cannot go below ~0.73 of its peak
        rc, expected = cli_json_rc("plan", RESNET, "--dim", "batch=16", "--optimizer", "sgd",
                                   "--budget-fraction", str(fraction))
        got = vramsim.plan(RESNET, dims={"batch": 16}, optimizer="sgd", budget_fraction=fraction)
        assert without_timings(got.to_dict()) == without_timings(expected)
        assert got.fits == (rc == 0) == (fraction == 0.8)


def test_strategies_match_the_cli(tmp_path):
    peak = vramsim.plan(GPT, dims=GPT_DIMS, budget_fraction=1).baseline_peak_bytes
    budgets = [peak * 8 // 10, peak // 2]
    expected = cli_json("strategies", GPT, *GPT_FLAGS, "--budgets",
                        ",".join(str(b) for b in budgets))
    got = vramsim.strategies(GPT, budgets, dims=GPT_DIMS)
    assert without_timings(got.to_dict()) == without_timings(expected)
    assert len(got.rows) == len(expected["rows"]) > len(budgets)

    expected = cli_json("strategies", RESNET, "--dim", "batch=16", "--budgets", "64MiB,1GiB",
                        "--strategy", "milp", "--time-limit", "20")
    got = vramsim.strategies(RESNET, "64MiB,1GiB", dims={"batch": 16}, strategy="milp",
                             time_limit_s=20)
    assert without_timings(got.to_dict()) == without_timings(expected)
    html = tmp_path / "s.html"
    got.write_html(html)
    assert "<html" in html.read_text()[:500].lower()


@pytest.mark.parametrize("flags,call", [
    (["plan", GPT, *GPT_FLAGS],
     lambda: vramsim.plan(GPT, dims=GPT_DIMS)),
    (["plan", GPT, *GPT_FLAGS, "--budget", "6 GiBs"],
     lambda: vramsim.plan(GPT, dims=GPT_DIMS, budget="6 GiBs")),
    (["plan", GPT, *GPT_FLAGS, "--budget-fraction", "0.5", "--checkpoint", "h.0"],
     lambda: vramsim.plan(GPT, dims=GPT_DIMS, budget_fraction=0.5, checkpoint=["h.0"])),
    (["plan", GPT, *GPT_FLAGS, "--budget-fraction", "0.5", "--time-limit", "0"],
     lambda: vramsim.plan(GPT, dims=GPT_DIMS, budget_fraction=0.5, time_limit_s=0)),
    (["plan", GPT, *GPT_FLAGS, "--budget-fraction", "0.5", "--strategy", "nosuch"],
     lambda: vramsim.plan(GPT, dims=GPT_DIMS, budget_fraction=0.5, strategy="nosuch")),
    (["strategies", GPT, *GPT_FLAGS, "--budgets", "4GiB,,6GiB"],
     lambda: vramsim.strategies(GPT, ["4GiB", "", "6GiB"], dims=GPT_DIMS)),
])
def test_plan_errors_raise_with_the_clis_message(flags, call):
    message = cli_error(*flags)
    with pytest.raises(vramsim.Error) as e:
        call()
    assert str(e.value) == message


def test_plan_budget_keywords():
    with pytest.raises(vramsim.Error, match="not both"):
        vramsim.plan(GPT, dims=GPT_DIMS, budget_bytes=1 << 30, budget="1GiB")
    with pytest.raises(vramsim.Error, match="budget_bytes must be an integer"):
        vramsim.plan(GPT, dims=GPT_DIMS, budget_bytes="1GiB")


def test_snapshot_and_compare_match_the_cli(tmp_path):
    dims = {"batch": 2, "seq": 32}
    mine, theirs = tmp_path / "py.pickle", tmp_path / "cli.pickle"
    vramsim.estimate(GPT, dims=dims).write_snapshot(mine)
    rc, _, err = cli("estimate", GPT, "--dim", "batch=2", "--dim", "seq=32",
                     "--snapshot", str(theirs))
    assert rc == 0, err
    assert mine.read_bytes() == theirs.read_bytes()  # the same file, byte for byte
    c = vramsim.compare(mine, GPT, dims=dims)
    assert c.to_dict() == cli_json("compare", str(mine), GPT, "--dim", "batch=2",
                                   "--dim", "seq=32")
    assert c.divergence is None and c.real["peak_allocated_bytes"] > 0
    assert c.real["peak_allocated_bytes"] == c.predicted["peak_allocated_bytes"]
    assert "peak allocated" in c.text
    longer = vramsim.compare(mine, GPT, dims={"batch": 2, "seq": 64})
    assert longer.divergence is not None
    with pytest.raises(vramsim.Error, match="torch-cuda"):
        vramsim.estimate(GPT, dims=dims, target="torch-cpu").write_snapshot(tmp_path / "x")
    with pytest.raises(vramsim.Error, match="absent.pickle"):
        vramsim.compare(tmp_path / "absent.pickle", GPT, dims=dims)


def test_nccl_buffers_are_a_term_beside_the_peak():
    # tp 2 x dp 4: 2 communicators x 16 channels x 2 peers x NCCL_BUFFSIZE 4 MiB = 256 MiB,
    # beside peak_bytes (not in its breakdown); none on torch-cpu (gloo) or on one rank.
    dims = {"batch": 8, "seq": 128}
    r = vramsim.estimate(GPT, dims=dims, tensor_parallel=2, data_parallel=4)
    assert r.nccl_buffer_bytes == 2 * 16 * 2 * 4 * 1024 * 1024 == 256 * 1024 * 1024
    assert r.to_dict() == cli_json("estimate", GPT, "--dim", "batch=8", "--dim", "seq=128",
                                   "--tp", "2", "--data-parallel", "4")
    assert sum(r.breakdown.values()) == r.peak_bytes
    assert "nccl_buffer_bytes" not in vramsim.estimate(GPT, dims=dims)
    assert "nccl_buffer_bytes" not in vramsim.estimate(GPT, dims=dims, target="torch-cpu",
                                                       data_parallel=4)
