"""Every bad configuration through the real command line: exit 2, one line on stderr, no
traceback; and the hardware command's output and files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wse_sim.cli.main import build_parser
from wse_sim.hardware.derived import derived_figures
from wse_sim.hardware.presets import PRESETS, get_preset
from wse_sim.hardware.spec import iter_fields


def wse_sim(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wse_sim", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("wse-sim")
    for word in words:
        assert word in lines[0]


BAD_ARGS = [
    # (arguments, words the one error line must contain: the field and the value)
    (["--set", "mesh.width=0"], ["mesh.width", "0"]),
    (["--set", "mesh.height=-4"], ["mesh.height", "-4"]),
    (["--set", "pe.clock_hz=-1e9"], ["pe.clock_hz", "-1"]),
    (["--set", "pe.clock_hz=nan"], ["pe.clock_hz", "nan"]),
    (["--set", "pe.clock_hz=fast"], ["pe.clock_hz", "'fast'"]),
    (["--set", "pe.sram_bytes=0"], ["pe.sram_bytes", "0"]),
    (["--set", "pe.reserved_sram_bytes=60000"], ["pe.reserved_sram_bytes", "60000"]),
    (["--set", "fabric.hop_latency_cycles=-1"], ["fabric.hop_latency_cycles", "-1"]),
    (["--set", "fabric.ramp_latency_cycles=-3"], ["fabric.ramp_latency_cycles", "-3"]),
    (["--set", "fabric.buffer_depth_wavelets=100000"], ["pe.sram_bytes", "router buffer"]),
    (["--set", "fabric.foo=3"], ["fabric.foo", "'3'", "unknown field"]),
    (["--set", "gpu.x=1"], ["gpu.x", "unknown section"]),
    (["--set", "pe.clock_hz"], ["--set", "section.field=value"]),
    (["--set", "=1"], ["--set", "'=1'"]),
    (["--preset", "wse9"], ["preset", "'wse9'", "wse2"]),
    (["--mesh", "64"], ["--mesh", "'64'", "WIDTHxHEIGHT"]),
    (["--mesh", "0x8"], ["--mesh", "'0x8'"]),
    (["--mesh", "axb"], ["--mesh", "'axb'"]),
    (["--hw", "does-not-exist.toml"], ["--hw", "does-not-exist.toml", "not found"]),
    (["--hw", "."], ["--hw", "folder"]),
    (["--bogus"], ["--bogus"]),
    (["--set"], ["--set", "expected one argument"]),
]


@pytest.mark.parametrize("args, words", BAD_ARGS)
def test_bad_argument_is_one_line_exit_2(tmp_path, args, words):
    assert_one_line_error(wse_sim("hardware", *args, cwd=tmp_path), *words)


BAD_FILES = [
    ("[pe\n", ["--hw", "not valid TOML"]),
    ("[pe]\nclock_hz = 'fast'\n", ["pe.clock_hz", "'fast'"]),
    ("[pe]\nclock_hz = -1.0\n", ["pe.clock_hz", "-1.0"]),
    ("[mesh]\nwidth = 0\n", ["mesh.width", "0"]),
    ("[fabric]\nhop_latency_cycles = -1\n", ["fabric.hop_latency_cycles", "-1"]),
    ("[fabric]\nfoo = 7\n", ["fabric.foo", "7", "unknown field"]),
    ("[gpu]\nx = 1\n", ["gpu", "unknown key"]),
    ("colour = 'red'\n", ["colour", "'red'"]),
    ("preset = 'wse9'\n", ["preset", "'wse9'"]),
    ("[pe]\nsram_bytes = 16\nreserved_sram_bytes = 0\n", ["pe.sram_bytes", "16"]),
]


@pytest.mark.parametrize("content, words", BAD_FILES)
def test_bad_hw_file_is_one_line_exit_2(tmp_path, content, words):
    path = tmp_path / "hw.toml"
    path.write_text(content)
    assert_one_line_error(wse_sim("hardware", "--hw", str(path)), *words)


def test_unwritable_output_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    target = str(blocker / "out.json")  # a path below a regular file
    assert_one_line_error(wse_sim("hardware", "--preset", "tiny", "--json", target), "--json")


def test_no_command_and_unknown_command_are_one_line():
    assert_one_line_error(wse_sim(), "COMMAND", "hardware", "presets")
    assert_one_line_error(wse_sim("nosuch"), "nosuch")


def test_every_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert {"hardware", "presets"} <= set(sub.choices)
    for name, sub_parser in sub.choices.items():
        text = sub_parser.format_help()
        assert text.startswith(f"usage: wse-sim {name}"), name
    proc = wse_sim("hardware", "--help")
    assert proc.returncode == 0 and "--toml" in proc.stdout and "--set" in proc.stdout


def test_hardware_prints_every_field_with_unit_and_derived():
    proc = wse_sim("hardware", "--preset", "wse3", "--set", "fabric.colors=16")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for info in iter_fields():
        line = next(ln for ln in lines if ln.split()[:1] == [info.key])
        assert f" {info.unit} " in line, line
    assert next(ln for ln in lines if ln.split()[:1] == ["fabric.colors"]).split()[1] == "16"
    for figure in derived_figures(get_preset("wse3")):
        assert any(ln.strip().startswith(figure.label) for ln in lines), figure.label
    assert "14.13" in proc.stdout  # 755 x 1170 PEs x 16 flop x 1.0 GHz = 14.13 PFLOP/s


@pytest.mark.parametrize("preset", ["wse3", "demo"])
def test_toml_written_by_hardware_loads_back(tmp_path, preset):
    toml, json_a, json_b = tmp_path / "hw.toml", tmp_path / "a.json", tmp_path / "b.json"
    args = ["--preset", preset, "--set", "pe.clock_hz=0.95e9", "--set", "name=mine"]
    first = wse_sim(
        "hardware", *args, "--mesh", "40x30", "--toml", str(toml), "--json", str(json_a)
    )
    assert first.returncode == 0, first.stderr
    second = wse_sim("hardware", "--hw", str(toml), "--json", str(json_b))
    assert second.returncode == 0, second.stderr
    a, b = json.loads(json_a.read_text()), json.loads(json_b.read_text())
    assert a == b
    assert a["spec"]["name"] == "mine" and a["spec"]["mesh"] == {"width": 40, "height": 30}
    assert a["spec"]["pe"]["clock_hz"] == 0.95e9
    assert first.stdout == second.stdout
    keys = {f["key"] for f in a["fields"]}
    assert keys == {i.key for i in iter_fields()}
    pes = next(d for d in a["derived"] if d["key"] == "pes")
    assert pes["value"] == 1200 and pes["unit"] == "PEs"
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_presets_lists_hardware_registry():
    proc = wse_sim("presets", "hardware")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "hardware presets:"
    assert [ln.split()[0] for ln in lines[1:]] == list(PRESETS)
    full = wse_sim("presets")
    assert full.returncode == 0 and full.stdout.startswith("hardware presets:")
