"""Heatmaps: pixel sizes, non-blank pictures, SVG output, downsampling, and the CLI's errors."""

from __future__ import annotations

import json
from types import SimpleNamespace

import matplotlib.image as mpimg
import numpy as np
import pytest

from wse_sim.cli.main import main
from wse_sim.errors import ConfigError
from wse_sim.report.heatmap import (
    DEFAULT_DPI,
    PlotContext,
    context_from_result,
    downsample,
    figure_pixels,
    heatmap_from_result,
    link_load,
    plot_compute,
    plot_links,
    plot_sram,
    result_panels,
)
from wse_sim.result.run_result import OpResult, RunResult


def make_result(width: int = 12, height: int = 8, seed: int = 0) -> RunResult:
    rng = np.random.default_rng(seed)
    return RunResult(
        model="gpt2-small",
        mode="prefill",
        mesh={"width": width, "height": height},
        placement="pipeline",
        engine="analytic",
        preset="demo",
        cycles=1000.0,
        seconds=1000.0 / 1.1e9,
        flops=1e9,
        tokens=128.0,
        tokens_per_s=1.4e8,
        tflops=1.1,
        peak_fraction=0.3,
        utilization={"compute_mean": 0.3},
        per_op=[OpResult("qkv", "gemm", "summa", [0, 0, width, height], 1000.0, 1e9)],
        pe_compute_busy=rng.random((height, width)),
        pe_flops=rng.random((height, width)) * 1e6,
        pe_sram_peak_bytes=rng.random((height, width)) * 40_000,
        link_wavelets=rng.random((4, height, width)) * 500,
    )


def read_png(path) -> np.ndarray:
    return mpimg.imread(str(path))


# -- array preparation ---------------------------------------------------------------------------
def test_downsample_max_and_mean_match_numpy_blocks() -> None:
    arr = np.arange(12 * 8, dtype=float).reshape(12, 8)
    small = downsample(arr, max_cells=4, method="max")
    assert small.block == (3, 3)
    assert small.values.shape == (4, 3)  # ceil(12/3), ceil(8/3)
    # a full interior block and the partial right-hand block (columns 6..7 only)
    assert small.values[1, 1] == arr[3:6, 3:6].max()
    assert small.values[2, 2] == arr[6:9, 6:8].max()
    mean = downsample(arr, max_cells=4, method="mean")
    assert mean.values[0, 0] == pytest.approx(arr[0:3, 0:3].mean())
    assert mean.values[3, 2] == pytest.approx(arr[9:12, 6:8].mean())  # partial: 6 real elements


def test_downsample_keeps_small_arrays_and_states_the_method() -> None:
    arr = np.ones((10, 20))
    same = downsample(arr, max_cells=250)
    assert not same.reduced and same.note() == ""
    np.testing.assert_array_equal(same.values, arr)
    big = downsample(np.zeros((994, 750)))
    # ceil(994 / 250) = 4 -> square 4x4 blocks: 249 x 188 cells
    assert big.block == (4, 4)
    assert big.values.shape == (249, 188)
    assert big.note() == "block max over 4x4 PEs (994x750 -> 249x188 cells)"


def test_downsample_rejects_unknown_method() -> None:
    with pytest.raises(ConfigError, match="method"):
        downsample(np.ones((4, 4)), method="median")


def test_link_load_is_the_busiest_outgoing_direction() -> None:
    rng = np.random.default_rng(1)
    links = rng.random((4, 5, 6))
    np.testing.assert_array_equal(link_load(links), np.max(links, axis=0))
    with pytest.raises(ConfigError, match="link_wavelets"):
        link_load(np.ones((3, 5, 6)))


def test_compute_panel_is_flops_over_peak_when_the_result_names_its_hardware() -> None:
    """With the spec in the result's inputs, the compute panel is compute utilization as
    docs/metrics.md defines it, not the busy fraction; the SRAM scale tops at data SRAM."""
    from wse_sim.hardware import get_preset
    from wse_sim.report.heatmap import result_panels

    spec = get_preset("demo")
    r = make_result()
    r.inputs = {"spec": spec.to_dict()}
    panels = {p.name.split(" (")[0]: p for p in result_panels(r)}
    expected = r.pe_flops / (spec.peak_flops_per_cycle("fp16") * r.cycles)
    np.testing.assert_allclose(panels["compute utilization"].values, expected)
    assert f"capacity {spec.pe.data_sram_bytes / 1024:g} KiB" in panels["SRAM peak"].name


def test_result_panels_use_busy_cycles_of_a_kernel_result() -> None:
    busy = np.array([[10.0, 20.0], [30.0, 40.0]])
    kernel_result = SimpleNamespace(
        kernel="gemm",
        cycles=40.0,
        pe_busy_cycles=busy,
        pe_flops=np.ones((2, 2)),
        pe_sram_peak_bytes=np.full((2, 2), 2048.0),
        link_wavelets=np.zeros((4, 2, 2)),
    )
    compute, sram, links = result_panels(kernel_result, "all")
    np.testing.assert_allclose(compute.values, busy / 40.0)
    np.testing.assert_allclose(sram.values, 2.0)  # KiB
    assert sram.units == "peak SRAM per PE (KiB)"
    assert links.units == "wavelets per cycle"
    assert context_from_result(kernel_result).model == "gemm"
    assert context_from_result(kernel_result).mesh == "2x2"


def test_result_panels_fall_back_to_flops_and_reject_missing_arrays() -> None:
    only_flops = SimpleNamespace(model="m", cycles=0.0, pe_flops=np.ones((3, 3)))
    (panel,) = result_panels(only_flops, "compute")
    assert panel.units == "FLOPs"
    with pytest.raises(ConfigError, match="pe_sram_peak_bytes"):
        result_panels(only_flops, "sram")
    with pytest.raises(ConfigError, match="kind"):
        result_panels(only_flops, "power")


# -- pictures ------------------------------------------------------------------------------------
def test_three_panel_png_has_expected_size_and_is_not_blank(tmp_path) -> None:
    out = heatmap_from_result(make_result(), tmp_path / "all.png")
    img = read_png(out)
    assert img.shape[:2] == figure_pixels(3)
    assert figure_pixels(3) == (550, 1800)  # 3 panels of 6 x 5.5 inches at 100 dpi
    assert img[..., :3].std() > 0.05
    assert not list(tmp_path.glob("*.tmp"))  # atomic write left no temporary file


@pytest.mark.parametrize("dpi", [50, 80])
def test_single_panels_scale_with_dpi(tmp_path, dpi) -> None:
    r = make_result()
    ctx = context_from_result(r)
    for draw, data in (
        (plot_compute, r.pe_compute_busy),
        (plot_sram, r.pe_sram_peak_bytes),
        (plot_links, r.link_wavelets),
    ):
        path = draw(data, tmp_path / f"{draw.__name__}.png", ctx, dpi=dpi)
        img = read_png(path)
        assert img.shape[:2] == (round(5.5 * dpi), round(6.0 * dpi))
        assert img[..., :3].std() > 0.05


def test_constant_map_still_draws(tmp_path) -> None:
    path = plot_compute(np.zeros((4, 4)), tmp_path / "zero.png", PlotContext(model="idle"))
    img = read_png(path)
    assert img.shape[:2] == figure_pixels(1, DEFAULT_DPI)
    assert img[..., :3].std() > 0.01  # axes, labels and colorbar are drawn


def test_per_direction_link_picture_is_a_2x2_grid(tmp_path) -> None:
    r = make_result()
    path = plot_links(r.link_wavelets, tmp_path / "dirs.png", cycles=r.cycles, per_direction=True)
    assert read_png(path).shape[:2] == figure_pixels(4, columns=2) == (1100, 1200)


def test_svg_output_is_svg_with_title_and_units(tmp_path) -> None:
    path = heatmap_from_result(make_result(), tmp_path / "all.svg")
    text = path.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert "gpt2-small | mesh 12x8 | placement pipeline | engine analytic" in text
    for units in ("fraction of cycles occupied", "peak SRAM per PE (KiB)", "wavelets per cycle"):
        assert units in text
    assert "block max" not in text  # a small mesh is drawn cell for cell


def test_large_mesh_states_the_downsampling_on_the_plot(tmp_path) -> None:
    r = make_result(width=750, height=994)
    path = heatmap_from_result(r, tmp_path / "big.svg", kind="compute")
    assert "block max over 4x4 PEs (994x750 -&gt; 249x188 cells)" in path.read_text()
    path = heatmap_from_result(r, tmp_path / "big_mean.svg", kind="sram", method="mean")
    assert "block mean over 4x4 PEs" in path.read_text()


def test_unknown_suffix_is_refused_before_drawing(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"\.png or \.svg"):
        heatmap_from_result(make_result(), tmp_path / "x.jpg")
    assert not list(tmp_path.iterdir())


# -- CLI -----------------------------------------------------------------------------------------
def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(["heatmap", *argv])
    except SystemExit as exc:  # argparse usage errors
        rc = int(exc.code)
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_redraws_a_saved_result(tmp_path, capsys) -> None:
    saved = make_result().save(tmp_path / "run.json")
    rc, out, _ = run_cli(capsys, str(saved))
    assert rc == 0
    default = tmp_path / "run.heatmap.png"
    assert str(default) in out
    assert read_png(default).shape[:2] == figure_pixels(3)
    rc, _, _ = run_cli(capsys, str(saved), "-o", str(tmp_path / "links.svg"), "--kind", "links")
    assert rc == 0 and "<svg" in (tmp_path / "links.svg").read_text()
    rc, _, _ = run_cli(capsys, str(saved), "--kind", "sram")
    assert rc == 0
    assert read_png(tmp_path / "run.sram.png").shape[:2] == figure_pixels(1)
    out = tmp_path / "dirs.png"
    rc, _, _ = run_cli(capsys, str(saved), "--kind", "links", "--per-direction", "-o", str(out))
    assert rc == 0 and read_png(out).shape[:2] == figure_pixels(4, columns=2)


def _no_arrays(tmp_path):
    r = make_result()
    for name in ("pe_compute_busy", "pe_flops", "pe_sram_peak_bytes", "link_wavelets"):
        setattr(r, name, None)
    return r.save(tmp_path / "bare.json")


def _missing_npz(tmp_path):
    saved = make_result().save(tmp_path / "lost.json")
    saved.with_suffix(".npz").unlink()
    return saved


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "not_json",
        "not_result",
        "missing_npz",
        "no_arrays",
        "bad_suffix",
        "bad_kind",
        "bad_max_cells",
        "per_direction_not_links",
    ],
)
def test_cli_errors_exit_2_with_one_line(tmp_path, capsys, case) -> None:
    good = make_result().save(tmp_path / "good.json")
    argv = {
        "missing": [str(tmp_path / "nope.json")],
        "not_json": [str(_write(tmp_path, "bad.json", "{not json"))],
        "not_result": [str(_write(tmp_path, "other.json", json.dumps({"a": 1})))],
        "missing_npz": [str(_missing_npz(tmp_path))],
        "no_arrays": [str(_no_arrays(tmp_path))],
        "bad_suffix": [str(good), "-o", str(tmp_path / "x.gif")],
        "bad_kind": [str(good), "--kind", "power"],
        "bad_max_cells": [str(good), "--max-cells", "0"],
        "per_direction_not_links": [str(good), "--per-direction"],
    }[case]
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "error" in err
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("*.gif"))
