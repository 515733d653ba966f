"""Placement: stage geometry, resident bytes, fit errors and placement files."""

from __future__ import annotations

import json

import pytest

from wse_sim.errors import ConfigError, PlanError, WseSimError
from wse_sim.graph import build_graph, memory_budget
from wse_sim.hardware.presets import PRESETS
from wse_sim.placement import PLACEMENTS, get_placement
from wse_sim.placement.file import FilePlacement
from wse_sim.placement.pipeline import allocate, partition
from wse_sim.placement.stream import streamed_resident_bytes
from wse_sim.placement.units import resident_bytes, units, weight_bytes
from wse_sim.spec import ModelSpec, get_model

TINY = ModelSpec("tiny", "gpt2", layers=3, d_model=64, heads=4, d_ff=256, vocab=512, max_seq=128)


def _spec(width: int, height: int):
    return PRESETS["small"].spec.with_mesh(width, height)


def _graph(mode: str = "prefill", model: ModelSpec = TINY, batch: int = 2):
    if mode == "decode":
        return build_graph(model, mode, batch=batch, context=64)
    return build_graph(model, mode, batch=batch, seq=32)


def _overlap(a, b) -> bool:
    return (
        a.x < b.x + b.width
        and b.x < a.x + a.width
        and a.y < b.y + b.height
        and b.y < a.y + a.height
    )


# -- units and resident bytes -------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["prefill", "decode", "train"])
def test_units_cover_every_op_once_in_order(mode):
    g = _graph(mode)
    us = units(g)
    names = [n for u in us for n in u.ops]
    assert sorted(names) == sorted(g.nodes)
    assert len(names) == len(set(names))
    assert [u.name for u in us] == ["embed", "L0", "L1", "L2", "head"]
    assert sum(u.flops for u in us) == pytest.approx(g.graph["flops"])


@pytest.mark.parametrize("mode", ["prefill", "train"])
def test_weights_of_all_ops_are_the_model_parameters(mode):
    g = _graph(mode)
    assert weight_bytes(g, tuple(g.nodes)) == pytest.approx(memory_budget(g).weights)


def test_whole_resident_is_the_memory_budget_in_decode():
    g = _graph("decode")
    budget = memory_budget(g)
    assert resident_bytes(g, tuple(g.nodes)) == pytest.approx(budget.weights + budget.kv_cache)


def test_stream_keeps_only_kv_cache_resident():
    g = _graph("decode")
    assert streamed_resident_bytes(g) == pytest.approx(memory_budget(g).kv_cache)
    placed = PLACEMENTS["stream"].place(g, _spec(16, 16))
    assert placed.schedule == "stream"
    assert placed.stages[0].resident_bytes == pytest.approx(memory_budget(g).kv_cache)


def test_stream_training_keeps_saved_activations_or_only_layer_inputs():
    from wse_sim.placement.stream import Stream
    from wse_sim.placement.units import recomputed_activation_bytes, saved_activation_bytes

    g = _graph("train")
    keep = Stream("keep").place(g, _spec(16, 16))
    again = Stream("recompute").place(g, _spec(16, 16))
    assert keep.activations == "keep" and again.activations == "recompute"
    assert keep.stages[0].resident_bytes == pytest.approx(saved_activation_bytes(g, tuple(g)))
    assert again.stages[0].resident_bytes == pytest.approx(recomputed_activation_bytes(g))
    # no optimizer state and no weights stay: they live in the external weight store
    assert again.stages[0].resident_bytes < keep.stages[0].resident_bytes
    assert any("recomputed" in n for n in again.notes)
    # outside training the policy does not apply
    assert Stream("recompute").place(_graph("decode"), _spec(16, 16)).activations == "keep"
    with pytest.raises(ConfigError, match="keep, recompute"):
        Stream("offload")


def test_stream_that_cannot_hold_the_activations_says_so_in_one_line():
    from wse_sim.placement.stream import Stream

    g = _graph("train", batch=8)
    with pytest.raises(PlanError) as info:
        Stream("keep").place(g, _spec(1, 1))
    msg = str(info.value)
    assert "saved activations (keep) need" in msg and "pe.data_sram_bytes" in msg
    assert "--batch" in msg and "\n" not in msg


# -- pipeline -----------------------------------------------------------------------------------
def test_partition_is_contiguous_and_balanced():
    works = [1.0, 5.0, 5.0, 5.0, 5.0, 20.0]
    cuts = partition(works, 3)
    assert cuts[0][0] == 0 and cuts[-1][1] == len(works)
    assert all(a[1] == b[0] for a, b in zip(cuts, cuts[1:]))
    assert len(cuts) <= 3
    # the best 3-way split of these works has largest group 20 (the last item alone)
    assert max(sum(works[a:b]) for a, b in cuts) == 20.0
    assert partition(works, 10) == [(i, i + 1) for i in range(6)]


def test_allocate_respects_minimum_and_total():
    lengths = allocate([1.0, 3.0, 1.0], [2, 1, 1], 20)
    assert sum(lengths) == 20
    assert all(n >= m for n, m in zip(lengths, [2, 1, 1]))
    assert lengths[1] == max(lengths)  # the heaviest stage gets the most lines


@pytest.mark.parametrize("mode", ["prefill", "train"])
@pytest.mark.parametrize("mesh", [(16, 16), (8, 32), (4, 40)])
def test_pipeline_stages_are_disjoint_inside_the_mesh_and_cover_the_ops(mode, mesh):
    spec = _spec(*mesh)
    g = _graph(mode)
    placed = PLACEMENTS["pipeline"].place(g, spec)
    assert placed.schedule == "pipeline"
    regions = [s.region for s in placed.stages]
    for r in regions:
        assert r.x + r.width <= spec.mesh.width and r.y + r.height <= spec.mesh.height
    for i, a in enumerate(regions):
        for b in regions[i + 1 :]:
            assert not _overlap(a, b)
    assert sum(r.num_pes for r in regions) == spec.num_pes  # strips tile the mesh
    placed_ops = placed.ops()
    assert sorted(placed_ops) == sorted(g.nodes) and len(placed_ops) == len(set(placed_ops))
    assert len(placed.stages) == min(len(units(g)), max(mesh))


def test_pipeline_gives_heavier_stages_more_pes():
    g = _graph("prefill")
    placed = PLACEMENTS["pipeline"].place(g, _spec(64, 16))
    by_name = {s.name: s for s in placed.stages}
    assert by_name["L0"].region.num_pes > by_name["embed"].region.num_pes


# -- fit errors ---------------------------------------------------------------------------------
def test_whole_fit_error_names_op_bytes_capacity_and_a_fix():
    spec = PRESETS["demo"].spec
    g = build_graph(get_model("gpt2-small"), "prefill", batch=1, seq=128)
    with pytest.raises(PlanError) as info:
        PLACEMENTS["whole"].place(g, spec)
    msg = str(info.value)
    assert "\n" not in msg
    budget = memory_budget(g)
    resident = (budget.weights + budget.kv_cache) / spec.num_pes  # prefill keeps its KV cache
    assert "op embed" in msg  # the op holding the most weights
    assert f"needs {int(-(-resident // 1))} bytes per PE" in msg
    assert f"{spec.pe.data_sram_bytes} bytes (pe.data_sram_bytes)" in msg
    assert "--placement stream" in msg and "--mesh" in msg
    # the suggested mesh really holds the resident bytes
    w, h = (int(v) for v in msg.split("--mesh ")[1].split(")")[0].split("x"))
    assert resident * spec.num_pes / (w * h) <= spec.pe.data_sram_bytes


def test_auto_picks_whole_when_it_fits_else_stream():
    g = _graph("prefill")
    assert PLACEMENTS["auto"].place(g, _spec(16, 16)).strategy == "whole"
    big = build_graph(get_model("gpt2-small"), "prefill", batch=1, seq=128)
    placed = PLACEMENTS["auto"].place(big, PRESETS["demo"].spec)
    assert placed.strategy == "stream" and "whole does not fit" in placed.notes[0]


def test_unknown_placement_name_lists_the_choices():
    with pytest.raises(ConfigError) as info:
        get_placement("diagonal")
    assert "whole" in str(info.value) and "pipeline" in str(info.value)


# -- placement files ----------------------------------------------------------------------------
TOML_FILE = """
name = "halves"
schedule = "pipeline"

[[rule]]
name = "front"
layers = [0, 1]
ops = ["embed*"]
rect = [0, 0, 8, 16]

[[rule]]
name = "back"
layers = 2
rect = [8, 0, 8, 16]

[[rule]]
ops = ["final_norm", "lm_head", "loss", "head.opt"]
rect = [8, 0, 8, 16]
"""


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("mode", ["prefill", "train"])
def test_toml_file_maps_layers_and_ops_to_rectangles(tmp_path, mode):
    g = _graph(mode)
    placed = get_placement(str(_write(tmp_path, "p.toml", TOML_FILE))).place(g, _spec(16, 16))
    assert placed.strategy == "halves" and placed.schedule == "pipeline"
    assert [s.name for s in placed.stages] == ["front", "back"]
    front, back = placed.stages
    assert (front.region.x, front.region.width, back.region.x) == (0, 8, 8)
    for name in g.nodes:
        op = g.nodes[name]["op"]
        stage = placed.region_of(name)
        if op.layer in (0, 1) or name.startswith("embed"):
            assert stage == front.region
        else:
            assert stage == back.region


def test_json_file_is_the_same_placement(tmp_path):
    data = {
        "schedule": "sequential",
        "default": [0, 0, 16, 16],
        "rules": [{"layers": [0, 2], "rect": [0, 0, 16, 8]}],
    }
    path = _write(tmp_path, "p.json", json.dumps(data))
    g = _graph("prefill")
    placed = get_placement(str(path)).place(g, _spec(16, 16))
    assert placed.strategy == "p" and placed.schedule == "sequential"
    for name in g.nodes:
        layer = g.nodes[name]["op"].layer
        want = (0, 0, 16, 8) if layer is not None else (0, 0, 16, 16)
        r = placed.region_of(name)
        assert (r.x, r.y, r.width, r.height) == want
    # overlapping sequential regions add up on the PEs they share
    sub = [s for s in placed.stages if s.region.height == 8][0]
    full = [s for s in placed.stages if s.region.height == 16][0]
    assert sub.resident_bytes_per_pe == pytest.approx(
        resident_bytes(g, sub.ops) / 128 + resident_bytes(g, full.ops) / 256
    )


BAD_FILES = [
    ("missing_rect.toml", "[[rule]]\nlayers = 0\n", "rect"),
    ("outside.toml", "default = [0, 0, 32, 16]\n", "inside the 16x16 mesh"),
    ("negative.toml", "default = [-1, 0, 4, 4]\n", "x, y >= 0"),
    ("unknown.toml", "colour = 1\ndefault = [0, 0, 4, 4]\n", "unknown key"),
    ("rule_key.toml", "[[rule]]\nlayer = 0\nrect = [0, 0, 4, 4]\n", "unknown key"),
    ("syntax.toml", "default = [0, 0,\n", "not valid TOML"),
    ("syntax.json", '{"default": [0, 0, 4, 4],}', "not valid JSON"),
    ("schedule.toml", 'schedule = "zigzag"\ndefault = [0, 0, 4, 4]\n', "sequential or pipeline"),
    ("layers.toml", "[[rule]]\nlayers = [3, 1]\nrect = [0, 0, 4, 4]\n", "first <= last"),
    ("uncovered.toml", "[[rule]]\nlayers = 0\nrect = [0, 0, 4, 4]\n", "matches no rule"),
    (
        "overlap.toml",
        'schedule = "pipeline"\ndefault = [0, 0, 8, 8]\n[[rule]]\nlayers = 0\nrect = [4, 4, 8, 8]\n',
        "overlaps",
    ),
    ("empty.toml", "", "at least one"),
]


@pytest.mark.parametrize("name,text,expect", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_placement_files_give_one_line_errors(tmp_path, name, text, expect):
    path = _write(tmp_path, name, text)
    with pytest.raises(WseSimError) as info:
        FilePlacement(path).place(_graph("prefill"), _spec(16, 16))
    msg = str(info.value)
    assert "\n" not in msg
    assert expect in msg
    assert name in msg


def test_missing_placement_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        get_placement(str(tmp_path / "nope.toml"))
    assert "no such file" in str(info.value)
