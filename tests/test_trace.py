"""Perfetto / Chrome trace export: well-formed events, cycle -> microsecond conversion, lanes,
spans on disk, and the CLI's errors."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from wse_sim.cli.main import main
from wse_sim.engine.result import Span
from wse_sim.errors import ConfigError
from wse_sim.report.trace import (
    OPS_PID,
    PES_PID,
    clock_of,
    load_spans,
    save_spans,
    spans_path_for,
    trace_events,
    write_trace,
)
from wse_sim.result.run_result import OpResult, RunResult

CLOCK = 1.1e9


def make_result(ops: list[OpResult] | None = None, cycles: float = 11_000.0) -> RunResult:
    if ops is None:
        ops = [
            OpResult("l0.qkv", "gemm", "summa", [0, 0, 4, 4], 1100.0, 1e6, 0.0, "fwd", 0),
            OpResult("l0.attn", "attention", "flash", [0, 0, 4, 4], 2200.0, 2e6, 1100.0, "fwd", 0),
            OpResult("l1.qkv", "gemm", "summa", [4, 0, 4, 4], 1100.0, 1e6, 550.0, "fwd", 1),
            # overlaps l0.attn on the same region: must go to a second lane
            OpResult("l0.bwd", "gemm", "summa", [0, 0, 4, 4], 1100.0, 1e6, 2200.0, "bwd", 0),
        ]
    return RunResult(
        model="gpt2-small",
        mode="train",
        mesh={"width": 8, "height": 4},
        placement="pipeline",
        engine="des",
        preset="tiny",
        cycles=cycles,
        seconds=cycles / CLOCK,
        flops=5e6,
        tokens=1.0,
        tokens_per_s=1.0,
        tflops=0.0,
        peak_fraction=0.0,
        utilization={},
        per_op=ops,
    )


SPANS = [
    Span(0, 0, "compute", "matmul", 0.0, 110.0),
    Span(0, 0, "send", "send east", 110.0, 220.0),
    Span(1, 0, "recv", "recv west", 112.0, 222.0),
    Span(1, 0, "compute", "matmul", 222.0, 330.0),
    Span(0, 1, "stream", "reduce", 0.0, 55.0),
]


def check_well_formed(doc: dict) -> list[dict]:
    """Assert the trace-event format; return the X events."""
    events = doc["traceEvents"]
    assert isinstance(events, list) and events
    names: dict[tuple[str, int, int], str] = {}
    xs = []
    for ev in events:
        assert ev["ph"] in ("X", "M")
        assert isinstance(ev["pid"], int) and isinstance(ev["tid"], int)
        assert isinstance(ev["name"], str) and ev["name"]
        if ev["ph"] == "M":
            assert ev["name"] in (
                "process_name",
                "thread_name",
                "process_sort_index",
                "thread_sort_index",
            )
            names[(ev["name"], ev["pid"], ev["tid"])] = ev["args"]
        else:
            assert ev["ts"] >= 0 and ev["dur"] >= 0
            xs.append(ev)
    for ev in xs:
        assert ("process_name", ev["pid"], 0) in names
        assert ("thread_name", ev["pid"], ev["tid"]) in names
    json.dumps(doc)  # serialisable
    return xs


def assert_no_overlap_per_thread(xs: list[dict]) -> None:
    by_thread = defaultdict(list)
    for ev in xs:
        by_thread[(ev["pid"], ev["tid"])].append((ev["ts"], ev["ts"] + ev["dur"]))
    for spans in by_thread.values():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert start >= end - 1e-9


def thread_names(doc: dict, pid: int) -> dict[int, str]:
    return {
        ev["tid"]: ev["args"]["name"]
        for ev in doc["traceEvents"]
        if ev["ph"] == "M" and ev["name"] == "thread_name" and ev["pid"] == pid
    }


def test_op_tracks_convert_cycles_to_microseconds() -> None:
    doc = trace_events(make_result())
    xs = check_well_formed(doc)
    assert doc["otherData"]["clock_hz"] == pytest.approx(CLOCK)
    ops = {ev["name"]: ev for ev in xs if ev["pid"] == OPS_PID and ev["tid"] != 0}
    # 1100 cycles at 1.1 GHz = 1 microsecond
    assert ops["l0.qkv"]["ts"] == pytest.approx(0.0)
    assert ops["l0.qkv"]["dur"] == pytest.approx(1.0)
    assert ops["l0.attn"]["ts"] == pytest.approx(1.0)
    assert ops["l0.attn"]["dur"] == pytest.approx(2.0)
    assert ops["l1.qkv"]["ts"] == pytest.approx(0.5)
    run = [ev for ev in xs if ev["pid"] == OPS_PID and ev["tid"] == 0]
    assert len(run) == 1 and run[0]["dur"] == pytest.approx(10.0)
    assert ops["l0.attn"]["args"]["kernel"] == "attention"
    assert ops["l0.bwd"]["cat"] == "gemm,bwd"


def test_regions_get_tracks_and_overlaps_get_lanes() -> None:
    doc = trace_events(make_result())
    xs = check_well_formed(doc)
    assert_no_overlap_per_thread(xs)
    tid = {ev["name"]: ev["tid"] for ev in xs if ev["pid"] == OPS_PID}
    assert tid["l0.qkv"] == tid["l0.attn"]  # same region, back to back
    assert tid["l0.bwd"] != tid["l0.attn"]  # same region, overlapping
    assert tid["l1.qkv"] not in (tid["l0.qkv"], tid["l0.bwd"])  # another region
    names = thread_names(doc, OPS_PID)
    assert names[tid["l0.qkv"]] == "region (0,0) 4x4"
    assert names[tid["l0.bwd"]] == "region (0,0) 4x4 lane 2"
    assert names[tid["l1.qkv"]] == "region (4,0) 4x4"
    # every op appears exactly once and durations add up to the ops' cycles
    op_events = [ev for ev in xs if ev["pid"] == OPS_PID and ev["tid"] != 0]
    assert sorted(ev["name"] for ev in op_events) == sorted(op.name for op in make_result().per_op)
    total_us = sum(op.cycles for op in make_result().per_op) / CLOCK * 1e6
    assert sum(ev["dur"] for ev in op_events) == pytest.approx(total_us)


def test_pe_tracks_from_spans() -> None:
    doc = trace_events(make_result(), SPANS)
    xs = check_well_formed(doc)
    assert_no_overlap_per_thread(xs)
    pe = [ev for ev in xs if ev["pid"] == PES_PID]
    assert len(pe) == len(SPANS)
    names = thread_names(doc, PES_PID)
    assert sorted(names.values()) == ["PE (0,0)", "PE (0,1)", "PE (1,0)"]
    send = next(ev for ev in pe if ev["name"] == "send east")
    assert send["cat"] == "send"
    assert send["ts"] == pytest.approx(110 / CLOCK * 1e6)
    assert send["dur"] == pytest.approx(110 / CLOCK * 1e6)
    assert names[send["tid"]] == "PE (0,0)"


def test_spans_alone_need_a_clock() -> None:
    with pytest.raises(ConfigError, match="clock_hz"):
        trace_events(None, SPANS)
    doc = trace_events(None, SPANS, clock_hz=1e9)
    xs = check_well_formed(doc)
    assert max(ev["ts"] + ev["dur"] for ev in xs) == pytest.approx(0.330)


def test_clock_inference_and_override() -> None:
    r = make_result()
    assert clock_of(r) == pytest.approx(CLOCK)
    assert clock_of(r, 2e9) == 2e9
    r.seconds = 0.0
    with pytest.raises(ConfigError, match="clock_hz"):
        clock_of(r)
    with pytest.raises(ConfigError, match="clock_hz"):
        clock_of(make_result(), 0)


def test_max_pe_tracks_keeps_the_first_pes_and_says_so() -> None:
    spans = [Span(x, y, "compute", "c", 0.0, 10.0) for y in range(3) for x in range(4)]
    doc = trace_events(None, spans, clock_hz=1e9, max_pe_tracks=5)
    names = thread_names(doc, PES_PID)
    assert len(names) == 5
    assert "PE (0,1)" in names.values() and "PE (1,1)" not in names.values()  # row-major
    assert doc["otherData"]["notes"] == [
        "spans of 7 of 12 PEs left out (kept the first 5 in row-major order)"
    ]


def test_overlapping_spans_on_one_pe_use_lanes() -> None:
    spans = [Span(0, 0, "compute", "a", 0.0, 10.0), Span(0, 0, "send", "b", 5.0, 15.0)]
    doc = trace_events(None, spans, clock_hz=1e6)
    xs = check_well_formed(doc)
    assert_no_overlap_per_thread(xs)
    assert sorted(thread_names(doc, PES_PID).values()) == ["PE (0,0)", "PE (0,0) lane 2"]


def test_negative_span_is_refused() -> None:
    with pytest.raises(ConfigError, match="end must be >= start"):
        trace_events(None, [Span(0, 0, "compute", "x", 10.0, 5.0)], clock_hz=1e9)


def test_spans_round_trip_and_file_errors(tmp_path) -> None:
    path = save_spans(tmp_path / "run.spans.json", SPANS)
    assert load_spans(path) == SPANS
    assert spans_path_for(tmp_path / "run.json") == tmp_path / "run.spans.json"
    assert load_spans(save_spans(tmp_path / "empty.spans.json", [])) == []
    bad = {
        "missing.json": None,
        "notjson.json": "{",
        "other.json": json.dumps({"format": "x", "version": 1, "spans": []}),
        "version.json": json.dumps({"format": "wse-sim spans", "version": 9, "spans": []}),
        "row.json": json.dumps({"format": "wse-sim spans", "version": 1, "spans": [[1, 2]]}),
    }
    for name, text in bad.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError, match="spans"):
            load_spans(tmp_path / name)


def test_write_trace_writes_loadable_json(tmp_path) -> None:
    path = write_trace(tmp_path / "t.json", make_result(), SPANS)
    doc = json.loads(path.read_text())
    check_well_formed(doc)
    assert doc["otherData"]["model"] == "gpt2-small"


# -- CLI -----------------------------------------------------------------------------------------
def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(["trace", *argv])
    except SystemExit as exc:
        rc = int(exc.code)
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_writes_ops_and_the_spans_saved_beside_the_result(tmp_path, capsys) -> None:
    saved = make_result().save(tmp_path / "run.json")
    rc, out, _ = run_cli(capsys, str(saved), "-o", str(tmp_path / "t.json"))
    assert rc == 0 and "4 ops, 0 spans" in out
    doc = json.loads((tmp_path / "t.json").read_text())
    assert not [ev for ev in check_well_formed(doc) if ev["pid"] == PES_PID]
    save_spans(spans_path_for(saved), SPANS)
    rc, out, _ = run_cli(capsys, str(saved))  # default output RESULT.trace.json
    assert rc == 0 and "4 ops, 5 spans" in out
    doc = json.loads((tmp_path / "run.trace.json").read_text())
    assert len([ev for ev in check_well_formed(doc) if ev["pid"] == PES_PID]) == len(SPANS)
    other = save_spans(tmp_path / "other.json", SPANS[:2])
    rc, out, _ = run_cli(capsys, str(saved), "--spans", str(other), "--clock-hz", "1e9")
    assert rc == 0 and "4 ops, 2 spans" in out
    doc = json.loads((tmp_path / "run.trace.json").read_text())
    assert doc["otherData"]["clock_hz"] == 1e9


@pytest.mark.parametrize(
    "case", ["missing", "not_json", "bad_spans", "nothing", "bad_suffix", "bad_clock", "bad_max"]
)
def test_cli_errors_exit_2_with_one_line(tmp_path, capsys, case) -> None:
    good = make_result().save(tmp_path / "good.json")
    empty = make_result(ops=[]).save(tmp_path / "empty.json")
    (tmp_path / "bad.json").write_text("[1, 2")
    argv = {
        "missing": [str(tmp_path / "nope.json")],
        "not_json": [str(tmp_path / "bad.json")],
        "bad_spans": [str(good), "--spans", str(tmp_path / "bad.json")],
        "nothing": [str(empty)],
        "bad_suffix": [str(good), "-o", str(tmp_path / "t.txt")],
        "bad_clock": [str(good), "--clock-hz", "-5"],
        "bad_max": [str(good), "--max-pe-tracks", "-1"],
    }[case]
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "error" in err
    assert not list(tmp_path.glob("*trace*")) and not (tmp_path / "t.txt").exists()


def test_trace_of_a_small_des_run() -> None:
    des = pytest.importorskip("wse_sim.engine.des")
    pytest.importorskip("wse_sim.kernels.allreduce")
    from wse_sim.hardware.presets import get_preset
    from wse_sim.kernels import KERNELS
    from wse_sim.program.ir import Region

    spec = get_preset("small")
    kernel = KERNELS["allreduce"]
    plan = kernel.plan(spec, Region(0, 0, 4, 4), dict.fromkeys(kernel.size_names, 64))
    run = des.run_program(kernel.program(plan, spec), spec, record_spans=True)
    assert run.spans
    doc = trace_events(None, run.spans, clock_hz=spec.pe.clock_hz)
    xs = check_well_formed(doc)
    assert_no_overlap_per_thread(xs)
    assert len(xs) == len(run.spans)
    # busy time per PE is conserved, and nothing ends after the run
    us = 1e6 / spec.pe.clock_hz
    per_pe = defaultdict(float)
    for s in run.spans:
        per_pe[f"PE ({s.x},{s.y})"] += (s.end - s.start) * us
    names = thread_names(doc, PES_PID)
    traced = defaultdict(float)
    for ev in xs:
        traced[names[ev["tid"]].split(" lane")[0]] += ev["dur"]
    assert traced.keys() == per_pe.keys()
    for pe, dur in per_pe.items():
        assert traced[pe] == pytest.approx(dur)
    assert max(ev["ts"] + ev["dur"] for ev in xs) <= run.cycles * us * (1 + 1e-12)
