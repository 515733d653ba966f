"""The hardware model: presets, derived figures, TOML loading, --set overrides, validation."""

from __future__ import annotations

import dataclasses
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wse_sim.errors import ConfigError
from wse_sim.hardware.derived import derived_figures, mesh_links
from wse_sim.hardware.loader import build_spec, parse_mesh
from wse_sim.hardware.presets import PRESETS, get_preset
from wse_sim.hardware.spec import SECTIONS, FabricSpec, PESpec, WaferSpec, iter_fields
from wse_sim.hardware.toml_writer import spec_to_toml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def figures(spec: WaferSpec) -> dict[str, float]:
    return {f.key: f.value for f in derived_figures(spec)}


# -- presets --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_is_named_and_described(name):
    preset = PRESETS[name]
    assert preset.name == name
    assert preset.spec.name == name
    assert get_preset(name) is preset.spec
    assert preset.description and "\n" not in preset.description


@pytest.mark.parametrize(
    "name, width, height",
    [("wse2", 750, 994), ("wse3", 755, 1170), ("tiny", 4, 4), ("small", 16, 16), ("demo", 64, 64)],
)
def test_preset_mesh(name, width, height):
    spec = get_preset(name)
    assert (spec.mesh.width, spec.mesh.height) == (width, height)
    assert spec.num_pes == width * height


@pytest.mark.parametrize("name", ["tiny", "small", "demo"])
def test_small_presets_are_wse2_pes(name):
    wse2, spec = get_preset("wse2"), get_preset(name)
    assert (spec.pe, spec.fabric, spec.io) == (wse2.pe, wse2.fabric, wse2.io)


def test_wse3_doubles_wse2_simd():
    a, b = get_preset("wse2").pe, get_preset("wse3").pe
    for name in ("simd_fp16_fmac", "simd_fp16_mixed_fmac", "simd_fp32", "simd_fp32_fmac"):
        assert getattr(b, name) == 2 * getattr(a, name)


# -- peak figures: the reference derivation -------------------------------------------------


def test_wse2_peak_matches_reference_derivation():
    spec = get_preset("wse2")
    expected = 750 * 994 * 8 * 1.1e9  # PEs x 8 FP16 flop/cycle x clock
    assert spec.peak_flops_per_s("fp16") == pytest.approx(expected, rel=1e-12)
    assert spec.peak_flops_per_s("bf16") == pytest.approx(expected, rel=1e-12)
    assert spec.peak_flops_per_s("fp32") == pytest.approx(750 * 994 * 2 * 1.1e9, rel=1e-12)
    fig = figures(spec)
    assert fig["pes"] == 745_500
    assert fig["peak_fp16_pflops"] == pytest.approx(expected / 1e15, rel=1e-12)
    assert fig["peak_fp16_pflops"] == pytest.approx(6.5604, rel=1e-9)


def test_wse3_peak_is_16_flop_per_cycle_per_pe():
    spec = get_preset("wse3")
    assert spec.peak_flops_per_cycle("fp16") == 16
    assert figures(spec)["peak_fp16_pflops"] == pytest.approx(755 * 1170 * 16 * 1e9 / 1e15)


def test_peak_rejects_unknown_dtype():
    with pytest.raises(ConfigError) as err:
        get_preset("wse2").peak_flops_per_s("int8")
    assert err.value.field == "dtype"


def test_derived_figures_closed_form():
    spec = get_preset("wse2")
    n, clock = 750 * 994, 1.1e9
    fig = figures(spec)
    assert fig["sram_total_gb"] == pytest.approx(n * 48 * 1024 / 1e9)
    assert fig["sram_data_total_gb"] == pytest.approx(n * 42 * 1024 / 1e9)
    assert fig["memory_bandwidth_pb_per_s"] == pytest.approx(n * (16 + 8) * clock / 1e15)
    assert fig["fabric_bandwidth_pbit_per_s"] == pytest.approx(n * 4 * 2 * 32 * clock / 1e15)
    assert fig["bisection_bandwidth_tb_per_s"] == pytest.approx(750 * 2 * 4 * clock / 1e12)
    # Within 10% of the vendor's figures, which count all 850k PEs.
    assert fig["memory_bandwidth_pb_per_s"] == pytest.approx(20, rel=0.1)
    assert fig["fabric_bandwidth_pbit_per_s"] == pytest.approx(220, rel=0.1)


@pytest.mark.parametrize("w, h", [(1, 1), (1, 5), (4, 4), (7, 3)])
def test_mesh_links_counts_neighbour_pairs(w, h):
    pairs = {
        frozenset({(x, y), (x + dx, y + dy)})
        for x in range(w)
        for y in range(h)
        for dx, dy in ((1, 0), (0, 1))
        if x + dx < w and y + dy < h
    }
    spec = get_preset("tiny").with_mesh(w, h)
    assert mesh_links(spec) == len(pairs)
    # Each link has two ends; the ports at the mesh edge have no link.
    assert 2 * mesh_links(spec) == 4 * w * h - 2 * w - 2 * h


# -- field metadata ---------------------------------------------------------------------------


def test_every_field_has_unit_doc_and_source():
    infos = list(iter_fields())
    expected = [(s, f.name) for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]
    assert [(i.section, i.name) for i in infos] == expected
    for info in infos:
        assert info.unit and info.doc and info.source, info.key


def test_unpublished_values_are_marked_estimates():
    estimates = {i.key for i in iter_fields() if i.estimate}
    assert {
        "pe.instruction_overhead_cycles",
        "pe.task_switch_cycles",
        "pe.transcendental_cycles_per_element",
        "pe.reserved_sram_bytes",
        "fabric.buffer_depth_wavelets",
    } <= estimates
    clock = next(i for i in iter_fields() if i.key == "pe.clock_hz")
    assert "WSE-3" in clock.source and "estimate" in clock.source


# -- TOML -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PRESETS))
def test_full_toml_round_trip(tmp_path, name):
    spec = get_preset(name)
    path = tmp_path / "hw.toml"
    path.write_text(spec_to_toml(spec))
    # Base preset is wse2 (or whatever the caller gives): a complete file overrides everything.
    assert build_spec(hw_file=path) == spec
    assert build_spec(hw_file=path, default_preset="demo") == spec


def test_toml_string_escapes_round_trip():
    name = 'a "quoted" \\ name\twith\nlines, é and 😀'
    spec = get_preset("tiny").replace(name=name)
    assert tomllib.loads(spec_to_toml(spec))["name"] == name


def test_partial_toml_starts_from_its_preset(tmp_path):
    path = tmp_path / "hw.toml"
    path.write_text('preset = "wse3"\nname = "slow3"\n[pe]\nclock_hz = 9e8\n[mesh]\nwidth = 32\n')
    spec = build_spec(hw_file=path)
    wse3 = get_preset("wse3")
    assert spec.name == "slow3"
    assert spec.pe == dataclasses.replace(wse3.pe, clock_hz=9e8)
    assert (spec.mesh.width, spec.mesh.height) == (32, 1170)
    assert (spec.fabric, spec.io) == (wse3.fabric, wse3.io)


def test_partial_toml_without_preset_uses_default(tmp_path):
    path = tmp_path / "hw.toml"
    path.write_text("[fabric]\nhop_latency_cycles = 3\n")
    assert build_spec(hw_file=path).fabric.hop_latency_cycles == 3
    assert build_spec(hw_file=path).mesh == get_preset("wse2").mesh
    assert build_spec(hw_file=path, default_preset="small").mesh == get_preset("small").mesh


def test_explicit_preset_beats_file_preset(tmp_path):
    path = tmp_path / "hw.toml"
    path.write_text('preset = "wse3"\n')
    assert build_spec(preset="tiny", hw_file=path) == get_preset("tiny")


def test_toml_numbers_as_text_and_whole_floats(tmp_path):
    path = tmp_path / "hw.toml"
    path.write_text('[pe]\nclock_hz = "1.2e9"\nsram_bytes = 65536.0\n[mesh]\nwidth = "1_000"\n')
    spec = build_spec(hw_file=path)
    assert spec.pe.clock_hz == 1.2e9
    assert spec.pe.sram_bytes == 65536 and type(spec.pe.sram_bytes) is int
    assert spec.mesh.width == 1000


# -- --set and --mesh -----------------------------------------------------------------------


def test_set_overrides_fields():
    spec = build_spec(
        preset="small",
        sets=["fabric.hop_latency_cycles=3", "pe.clock_hz=9e8", "mesh.width=32", "name=mine"],
    )
    small = get_preset("small")
    assert spec.fabric == dataclasses.replace(small.fabric, hop_latency_cycles=3)
    assert spec.pe == dataclasses.replace(small.pe, clock_hz=9e8)
    assert (spec.mesh.width, spec.mesh.height) == (32, 16)
    assert spec.name == "mine"


def test_later_set_wins_and_mesh_wins_last(tmp_path):
    path = tmp_path / "hw.toml"
    path.write_text("[pe]\ntask_switch_cycles = 7\n[mesh]\nwidth = 8\n")
    spec = build_spec(
        hw_file=path,
        sets=["pe.task_switch_cycles=9", "pe.task_switch_cycles=11", "mesh.width=12"],
        mesh="5x6",
    )
    assert spec.pe.task_switch_cycles == 11
    assert (spec.mesh.width, spec.mesh.height) == (5, 6)


def test_overrides_validated_together():
    # A deep buffer needs a large SRAM: valid only together, in either order.
    for sets in (
        ["fabric.buffer_depth_wavelets=100000", "pe.sram_bytes=1000000"],
        ["pe.sram_bytes=1000000", "fabric.buffer_depth_wavelets=100000"],
    ):
        spec = build_spec(sets=sets)
        assert spec.router_buffer_bytes == 400_000 <= spec.pe.sram_bytes


def test_set_types():
    spec = build_spec(sets=["pe.simd_fp16_fmac=8.0", "io.io_bytes_per_s=200000000000"])
    assert spec.pe.simd_fp16_fmac == 8 and type(spec.pe.simd_fp16_fmac) is int
    assert spec.io.io_bytes_per_s == 2e11 and type(spec.io.io_bytes_per_s) is float


def test_zero_latencies_are_allowed():
    spec = build_spec(sets=["fabric.hop_latency_cycles=0", "pe.instruction_overhead_cycles=0"])
    assert spec.fabric.hop_latency_cycles == 0 and spec.pe.instruction_overhead_cycles == 0


@pytest.mark.parametrize("text, wh", [("64x64", (64, 64)), ("3X5", (3, 5)), (" 7*2 ", (7, 2))])
def test_parse_mesh(text, wh):
    assert parse_mesh(text) == wh


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(1, 2000),
    height=st.integers(1, 2000),
    clock=st.floats(1e6, 1e10, allow_nan=False),
    depth=st.integers(1, 64),
    hop=st.integers(0, 10),
    io=st.floats(1e6, 1e15, allow_nan=False),
)
def test_random_specs_round_trip_through_toml(
    tmp_path_factory, width, height, clock, depth, hop, io
):
    spec = WaferSpec(
        name="random",
        pe=PESpec(clock_hz=clock),
        fabric=FabricSpec(buffer_depth_wavelets=depth, hop_latency_cycles=hop),
    ).with_mesh(width, height)
    spec = spec.replace(io=dataclasses.replace(spec.io, io_bytes_per_s=io))
    path = tmp_path_factory.mktemp("hw") / "hw.toml"
    path.write_text(spec_to_toml(spec))
    assert build_spec(hw_file=path) == spec


# -- bad configuration: one ConfigError naming the field and the value ----------------------

BAD_SETS = [
    # (sets, field the error names, text of the value that must appear)
    (["mesh.width=0"], "mesh.width", "0"),
    (["mesh.height=-3"], "mesh.height", "-3"),
    (["mesh.width=1.5"], "mesh.width", "1.5"),
    (["pe.clock_hz=0"], "pe.clock_hz", "0"),
    (["pe.clock_hz=-1"], "pe.clock_hz", "-1"),
    (["pe.clock_hz=nan"], "pe.clock_hz", "nan"),
    (["pe.clock_hz=inf"], "pe.clock_hz", "inf"),
    (["pe.clock_hz=fast"], "pe.clock_hz", "fast"),
    (["pe.sram_bytes=-1"], "pe.sram_bytes", "-1"),
    (["pe.simd_fp16_fmac=0"], "pe.simd_fp16_fmac", "0"),
    (["pe.instruction_overhead_cycles=-1"], "pe.instruction_overhead_cycles", "-1"),
    (["pe.task_switch_cycles=-2"], "pe.task_switch_cycles", "-2"),
    (["pe.reserved_sram_bytes=49152"], "pe.reserved_sram_bytes", "49152"),
    (["fabric.hop_latency_cycles=-1"], "fabric.hop_latency_cycles", "-1"),
    (["fabric.ramp_latency_cycles=-1"], "fabric.ramp_latency_cycles", "-1"),
    (["fabric.buffer_depth_wavelets=0"], "fabric.buffer_depth_wavelets", "0"),
    (["fabric.colors=0"], "fabric.colors", "0"),
    (["io.io_bytes_per_s=-5"], "io.io_bytes_per_s", "-5"),
    # SRAM smaller than one router buffer (8 wavelets x 4 bytes = 32 bytes)
    (["pe.reserved_sram_bytes=0", "pe.sram_bytes=16"], "pe.sram_bytes", "16"),
    (["fabric.buffer_depth_wavelets=100000"], "pe.sram_bytes", "49152"),
    # unknown section / field: the message shows the given value
    (["foo.bar=1"], "foo.bar", "'1'"),
    (["fabric.foo=3"], "fabric.foo", "'3'"),
    # malformed --set
    (["pe.clock_hz"], "--set", "pe.clock_hz"),
    (["=3"], "--set", "=3"),
    (["pe=3"], "--set", "pe=3"),
    (["pe.clock_hz="], "--set", "pe.clock_hz="),
    (["name="], "--set", "name="),
]


@pytest.mark.parametrize("sets, field, value", BAD_SETS)
def test_bad_set_raises_config_error(sets, field, value):
    with pytest.raises(ConfigError) as err:
        build_spec(sets=sets)
    message = str(err.value)
    assert err.value.field == field
    assert message.startswith(f"{field}=")
    assert value in message and "\n" not in message


@pytest.mark.parametrize("mesh", ["64", "axb", "0x4", "-1x4", "4x4x4", "4x", "1.5x2"])
def test_bad_mesh(mesh):
    with pytest.raises(ConfigError) as err:
        build_spec(mesh=mesh)
    assert err.value.field == "--mesh" and repr(mesh) in str(err.value)


@pytest.mark.parametrize("preset", ["nope", "WSE2", ""])
def test_unknown_preset(preset):
    with pytest.raises(ConfigError) as err:
        build_spec(preset=preset)
    assert err.value.field == "preset" and "wse2, wse3" in str(err.value)


BAD_FILES = [
    # (file contents, field the error names, text of the value that must appear)
    (b"[pe\n", "--hw", "not valid TOML"),
    (b"\xff\xfe\x00", "--hw", "UTF-8"),
    (b"foo = 1\n", "foo", "1"),
    (b"pe = 3\n", "pe", "3"),
    (b"[pe]\nclock_hz = 'fast'\n", "pe.clock_hz", "'fast'"),
    (b"[pe]\nclock_hz = true\n", "pe.clock_hz", "True"),
    (b"[mesh]\nwidth = [1, 2]\n", "mesh.width", "[1, 2]"),
    (b"[fabric]\nfoo = 7\n", "fabric.foo", "7"),
    (b"[fabric.sub]\nx = 1\n", "fabric.sub", "{'x': 1}"),
    (b"[gpu]\nx = 1\n", "gpu", "{'x': 1}"),
    (b"preset = 'nope'\n", "preset", "'nope'"),
    (b"preset = [1]\n", "preset", "[1]"),
    (b"name = ''\n", "name", "''"),
    (b"name = 5\n", "name", "5"),
]


@pytest.mark.parametrize("content, field, value", BAD_FILES)
def test_bad_file_raises_config_error(tmp_path, content, field, value):
    path = tmp_path / "hw.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        build_spec(hw_file=path)
    message = str(err.value)
    assert err.value.field == field
    assert value in message and "\n" not in message


def test_missing_file_and_folder(tmp_path):
    for path, words in ((tmp_path / "none.toml", "not found"), (tmp_path, "folder")):
        with pytest.raises(ConfigError) as err:
            build_spec(hw_file=path)
        assert err.value.field == "--hw" and str(path) in str(err.value) and words in str(err.value)


def test_with_field_shows_given_value():
    with pytest.raises(ConfigError, match=r"fabric\.foo=5 is invalid: unknown field"):
        get_preset("tiny").with_field("fabric", "foo", 5)
    assert get_preset("tiny").with_field("fabric", "colors", 8).fabric.colors == 8


def test_direct_construction_validates():
    with pytest.raises(ConfigError, match="mesh.width"):
        get_preset("tiny").with_mesh(0, 4)
    with pytest.raises(ConfigError, match="pe.clock_hz"):
        PESpec(clock_hz=float("inf"))
    with pytest.raises(ConfigError, match="fabric.colors"):
        FabricSpec(colors=True)
