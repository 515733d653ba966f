"""The discrete-event fabric engine against closed forms (docs/engine.md)."""

from __future__ import annotations

import numpy as np
import pytest

from wse_sim.engine.compile import ProgramError
from wse_sim.engine.des import run_program
from wse_sim.engine.routing import EAST, Router
from wse_sim.errors import DeadlockError, SramOverflowError
from wse_sim.hardware import get_preset
from wse_sim.hardware.cost import message_cycles
from wse_sim.program import Compute, Dest, Phase, Program, Recv, Region, Send, Stream

SPEC = get_preset("small")  # 16x16 mesh of WSE-2 PEs
R = SPEC.fabric.ramp_latency_cycles
H = SPEC.fabric.hop_latency_cycles
B = SPEC.fabric.buffer_depth_wavelets
O = SPEC.pe.instruction_overhead_cycles


def only(region: Region, *cells: tuple[int, int]) -> np.ndarray:
    """A mask that is true at the given absolute (x, y) cells."""
    m = np.zeros(region.shape, dtype=bool)
    for x, y in cells:
        m[y - region.y, x - region.x] = True
    return m


def run(program: Program, **kw):
    """Run and check conservation: every wavelet owed to a receiver was delivered."""
    res = run_program(program, SPEC, **kw)
    assert res.wavelets_delivered == res.wavelets_expected
    return res


def span_end(res, x: int, y: int, kind: str) -> float:
    return max(s.end for s in res.spans if (s.x, s.y, s.kind) == (x, y, kind))


@pytest.mark.parametrize("hops", [1, 2, 5, 15])
@pytest.mark.parametrize("n", [1, 2, 7, 100])
def test_unicast_arrives_at_closed_form(hops: int, n: int) -> None:
    reg = Region(0, 0, 16, 1)
    p = Program(
        "unicast",
        reg,
        [
            Phase(
                "p",
                [
                    Send(3, n, Dest.to(hops, 0), mask=only(reg, (0, 0))),
                    Recv(3, n, (-hops, 0), mask=only(reg, (hops, 0))),
                ],
            )
        ],
    )
    res = run(p)
    # ramp + h hops + (n - 1) pipelined wavelets + ramp
    assert res.cycles == 2 * R + hops * H + (n - 1)
    assert res.cycles == message_cycles(SPEC, hops, n)
    assert res.link_wavelets.sum() == n * hops
    assert res.wavelets_injected == n


def test_unicast_along_both_dimensions() -> None:
    reg = Region(0, 0, 16, 16)
    p = Program(
        "xy",
        reg,
        [
            Phase(
                "p",
                [
                    Send(0, 9, Dest.to(4, 6), mask=only(reg, (2, 3))),
                    Recv(0, 9, (-4, -6), mask=only(reg, (6, 9))),
                ],
            )
        ],
    )
    res = run(p)
    assert res.cycles == message_cycles(SPEC, 10, 9)
    # dimension order: east along row 3 first, then south along column 6
    assert res.link_wavelets[EAST, 3, 2:6].tolist() == [9, 9, 9, 9]
    assert res.link_wavelets[3, 3:9, 6].tolist() == [9] * 6
    assert res.link_wavelets.sum() == 9 * 10


def test_shared_link_serialises_disjoint_links_do_not() -> None:
    n = 50
    reg = Region(0, 0, 8, 2)
    # A: (0,0) -> (2,0) over links 0->1, 1->2. B: (1,0) -> (3,0) over 1->2, 2->3.
    # A head wants link 1->2 at t_A + R + H, B's at t_B + R: start B H cycles after A.
    # C: (0,1) -> (2,1) on row 1, disjoint from both.
    lanes = SPEC.pe.simd_fp16_fmac
    t_a, t_b = O + 1, O + 2  # one and two SIMD cycles of work first
    assert t_b - t_a == H
    ops = [
        Compute("add", lanes, mask=only(reg, (0, 0))),
        Compute("add", 2 * lanes, mask=only(reg, (1, 0))),
        Send(0, n, Dest.to(2, 0), mask=only(reg, (0, 0), (1, 0), (0, 1))),
        Recv(0, n, (-2, 0), mask=only(reg, (2, 0), (3, 0), (2, 1))),
    ]
    res = run(Program("share", reg, [Phase("p", ops)]), record_spans=True)
    unloaded = message_cycles(SPEC, 2, n)
    a_took = span_end(res, 2, 0, "recv") - t_a
    b_took = span_end(res, 3, 0, "recv") - t_b
    assert sorted([a_took, b_took]) == [unloaded, unloaded + n]  # one waits exactly n cycles
    assert span_end(res, 2, 1, "recv") == unloaded  # the disjoint message is not delayed
    assert res.link_wavelets[EAST, 0, 1] == 2 * n
    assert res.link_stall_cycles[EAST, 0, 1] == n


def test_row_multicast_every_link_carries_n_and_far_end_on_time() -> None:
    n, width = 40, 16
    reg = Region(0, 0, width, 1)
    p = Program(
        "mcast",
        reg,
        [
            Phase(
                "p",
                [
                    Send(1, n, Dest(1, width - 1, 0, 0), mask=only(reg, (0, 0))),
                    Recv(1, n, (0, 0), mask=~only(reg, (0, 0))),
                ],
            )
        ],
    )
    p.phases[0].ops[1].src = None
    res = run(p, record_spans=True)
    assert res.link_wavelets[EAST, 0, : width - 1].tolist() == [n] * (width - 1)
    assert res.link_wavelets.sum() == n * (width - 1)
    assert res.wavelets_injected == n and res.wavelets_expected == n * (width - 1)
    for x in range(1, width):
        assert span_end(res, x, 0, "recv") == message_cycles(SPEC, x, n)


def test_rectangle_multicast_is_a_tree() -> None:
    reg = Region(0, 0, 16, 16)
    n = 6
    src = (5, 7)
    rect = Dest(-5, 10, -7, 8)  # the whole mesh
    p = Program(
        "bcast",
        reg,
        [
            Phase(
                "p",
                [
                    Send(2, n, rect, mask=only(reg, src)),
                    Recv(2, n, mask=~only(reg, src)),
                ],
            )
        ],
    )
    res = run(p, record_spans=True)
    assert res.link_wavelets.sum() == n * (16 * 16 - 1)  # a spanning tree: one link per PE
    far = max(abs(x - src[0]) + abs(y - src[1]) for x in range(16) for y in range(16))
    assert res.cycles == message_cycles(SPEC, far, n)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_slow_receiver_throttles_sender_once_buffers_fill(k: int) -> None:
    reg = Region(0, 0, 2, 1)

    def program(n: int) -> Program:
        return Program(
            "slow",
            reg,
            [
                Phase(
                    "p",
                    [
                        Send(0, n, Dest.to(1, 0), mask=only(reg, (0, 0))),
                        Recv(0, n, (-1, 0), mask=only(reg, (1, 0)), interval=k),
                    ],
                )
            ],
        )

    ends = {}
    for n in (400, 800):
        res = run(program(n), record_spans=True)
        head = 2 * R + H
        assert span_end(res, 1, 0, "recv") == head + (n - 1) * k
        capacity = 2 * B  # buffers at two routers on a one-hop path
        ends[n] = span_end(res, 0, 0, "send")
        assert ends[n] == head + (n - 1 - capacity) * k + 1 - (2 * R + H)
    # the sender now runs at the receiver's rate
    assert (ends[800] - ends[400]) / 400 == k


def test_small_message_fits_in_buffers_and_does_not_wait() -> None:
    reg = Region(0, 0, 2, 1)
    n = 2 * B  # exactly the path's buffering
    p = Program(
        "fits",
        reg,
        [
            Phase(
                "p",
                [
                    Send(0, n, Dest.to(1, 0), mask=only(reg, (0, 0))),
                    Compute("add", 4000, mask=only(reg, (1, 0))),
                    Recv(0, n, (-1, 0), mask=only(reg, (1, 0))),
                ],
            )
        ],
    )
    res = run(p, record_spans=True)
    assert span_end(res, 0, 0, "send") == n  # injected at one wavelet per cycle, no wait
    late = span_end(res, 1, 0, "compute")
    assert span_end(res, 1, 0, "recv") == late + n - 1


def test_streaming_chain_is_pipelined() -> None:
    """P PEs each add their vector of E elements to a passing stream: about E/2 + c*P cycles
    (two fp16 elements per wavelet), not E*P."""
    spec = get_preset("demo")

    def chain(p_count: int, elements: int):
        reg = Region(0, 0, p_count, 1)
        n = elements // 2
        first, last = only(reg, (0, 0)), only(reg, (p_count - 1, 0))
        mid = ~(first | last)
        ops = [
            Send(0, n, Dest.to(1, 0), mask=first, buffer="v"),
            Stream(
                Recv(0, n, (-1, 0)),
                Compute("add", elements),
                Send(0, n, Dest.to(1, 0)),
                mask=mid,
                fn=lambda mem, x, y, inc: inc + mem["v"],
            ),
            Stream(
                Recv(0, n, (-1, 0)),
                Compute("add", elements),
                None,
                mask=last,
                fn=lambda mem, x, y, inc: mem.__setitem__("out", inc + mem["v"]),
            ),
        ]
        prog = Program(
            "chain",
            reg,
            [Phase("c", ops)],
            init=lambda x, y: {"v": np.full(elements, x + 1.0, dtype=np.float32)},
            collect=lambda mems: mems[(p_count - 1, 0)]["out"],
        )
        res = run_program(prog, spec, functional=True)
        assert res.wavelets_delivered == res.wavelets_expected
        np.testing.assert_allclose(res.output, np.full(elements, p_count * (p_count + 1) / 2))
        return res.cycles

    per_pe = O + 2 * R + H  # issue, ramp out, hop, ramp in
    for p_count in (4, 16, 64):
        for elements in (64, 4096):
            cycles = chain(p_count, elements)
            assert cycles <= elements / 2 + per_pe * p_count + 2
            assert cycles >= elements / 2 + per_pe * (p_count - 2)
    assert chain(64, 4096) < 2 * 4096  # far from E * P


def test_cyclic_wait_is_detected_and_reported() -> None:
    reg = Region(0, 0, 2, 1)
    a, b = only(reg, (0, 0)), only(reg, (1, 0))
    p = Program(
        "cyclic",
        reg,
        [
            Phase(
                "p",
                [
                    Recv(4, 3, (1, 0), mask=a),
                    Recv(4, 3, (-1, 0), mask=b),
                    Send(4, 3, Dest.to(1, 0), mask=a),
                    Send(4, 3, Dest.to(-1, 0), mask=b),
                ],
            )
        ],
    )
    with pytest.raises(DeadlockError) as info:
        run_program(p, SPEC)
    err = info.value
    assert len(err.cycle) == 2
    text = str(err)
    assert "PE(0, 0)" in text and "PE(1, 0)" in text and "color 4" in text
    assert "\n" not in text


def test_sends_larger_than_buffers_in_both_directions_deadlock() -> None:
    reg = Region(0, 0, 2, 1)
    a, b = only(reg, (0, 0)), only(reg, (1, 0))
    n = 10 * B
    ops = [
        Send(0, n, Dest.to(1, 0), mask=a),
        Send(0, n, Dest.to(-1, 0), mask=b),
        Recv(0, n, (1, 0), mask=a),
        Recv(0, n, (-1, 0), mask=b),
    ]
    with pytest.raises(DeadlockError) as info:
        run_program(Program("exchange", reg, [Phase("p", ops)]), SPEC)
    assert len(info.value.cycle) == 2
    assert "link leaving router" in str(info.value)
    # Within the buffers the same exchange completes.
    small = [
        Send(0, B, o.dest, mask=o.mask) if isinstance(o, Send) else Recv(0, B, o.src, mask=o.mask)
        for o in ops
    ]
    # each CE injects B wavelets (B cycles), then drains the B that wait in its buffers
    assert run(Program("exchange", reg, [Phase("p", small)])).cycles == 2 * B - 1


def test_receive_without_sender_is_reported_not_hung() -> None:
    reg = Region(0, 0, 2, 1)
    p = Program("orphan", reg, [Phase("p", [Recv(1, 5, (-1, 0), mask=only(reg, (1, 0)))])])
    with pytest.raises(DeadlockError) as info:
        run_program(p, SPEC)
    assert info.value.cycle == []
    assert "PE(1, 0)" in str(info.value) and "PE(0, 0)" in str(info.value)


def test_sram_overflow_names_pe_and_bytes() -> None:
    reg = Region(0, 0, 2, 2)
    need = SPEC.pe.data_sram_bytes + 1
    with pytest.raises(SramOverflowError, match=f"{need} bytes.*{SPEC.pe.data_sram_bytes}"):
        run_program(Program("big", reg, [], sram_bytes=need), SPEC)


def test_program_errors() -> None:
    reg = Region(0, 0, 2, 1)
    bad_color = Program(
        "c", reg, [Phase("p", [Send(99, 1, Dest.to(1, 0), mask=only(reg, (0, 0)))])]
    )
    with pytest.raises(ProgramError, match="color 99"):
        run_program(bad_color, SPEC)
    off_mesh = Program("o", reg, [Phase("p", [Send(0, 1, Dest.to(-1, 0), mask=only(reg, (0, 0)))])])
    with pytest.raises(ProgramError, match="leaves"):
        run_program(off_mesh, SPEC)
    sizes = Program(
        "s",
        reg,
        [
            Phase(
                "p",
                [
                    Send(0, 4, Dest.to(1, 0), mask=only(reg, (0, 0))),
                    Recv(0, 5, (-1, 0), mask=only(reg, (1, 0))),
                ],
            )
        ],
    )
    with pytest.raises(ProgramError, match="receives 5 wavelets"):
        run_program(sizes, SPEC)
    with pytest.raises(ProgramError, match="leaves"):
        run_program(Program("r", Region(15, 0, 2, 1), []), SPEC)


def test_compute_cycles_and_flops_per_pe() -> None:
    reg = Region(2, 3, 4, 2)
    elements = np.arange(8).reshape(2, 4) * 10 + 8
    res = run(Program("fmac", reg, [Phase("p", [Compute("fmac", elements)])]))
    lanes = SPEC.pe.simd_fp16_fmac
    expected_cycles = O + np.ceil(elements / lanes)
    assert res.cycles == expected_cycles.max()
    np.testing.assert_array_equal(res.pe_busy_cycles[3:5, 2:6], expected_cycles)
    np.testing.assert_array_equal(res.pe_flops[3:5, 2:6], 2 * elements)
    assert res.pe_flops.sum() == 2 * elements.sum()  # nothing outside the region
    assert res.link_wavelets.shape == (4, 16, 16)


def test_functional_payloads_arrive_intact() -> None:
    reg = Region(0, 0, 4, 4)
    ops = [
        Send(5, 8, Dest.to(1, 0), mask=np.arange(16).reshape(4, 4) % 4 < 3, buffer="x"),
        Recv(5, 8, (-1, 0), mask=np.arange(16).reshape(4, 4) % 4 > 0, buffer="got"),
    ]
    prog = Program(
        "shift",
        reg,
        [Phase("p", ops)],
        init=lambda x, y: {"x": np.full(16, 10 * y + x, dtype=np.float16)},
    )
    res = run_program(prog, SPEC, functional=True)
    for y in range(4):
        for x in range(1, 4):
            np.testing.assert_array_equal(res.memories[(x, y)]["got"], 10 * y + x - 1)


def test_timing_does_not_depend_on_lookahead() -> None:
    """Link reservations are order-independent, so how far PEs run ahead changes nothing."""
    reg = Region(0, 0, 8, 8)
    rng = np.random.default_rng(3)
    ops = []
    for step in range(6):
        dx = int(rng.integers(1, 4))
        mask = np.zeros(reg.shape, dtype=bool)
        mask[:, : 8 - dx] = True
        ops += [
            Send(step % 3, int(rng.integers(1, 40)), Dest.to(dx, 0), mask=mask),
            Recv(step % 3, 0, (-dx, 0), mask=np.roll(mask, dx, axis=1)),
            Compute("fmac", int(rng.integers(1, 200))),
        ]
        ops[-2].wavelets = ops[-3].wavelets
    prog = Program("mix", reg, [Phase("p", ops)])
    a = run_program(prog, SPEC, lookahead=0)
    b = run_program(prog, SPEC, lookahead=1e9)
    assert a.cycles == b.cycles
    np.testing.assert_array_equal(a.link_wavelets, b.link_wavelets)


def test_route_tree_links_unique_and_dests_covered() -> None:
    router = Router(9, 7)
    for src in [(0, 0), (4, 3), (8, 6)]:
        tree = router.tree(*src, 0, 8, 0, 6)
        assert len(set(tree.links)) == len(tree.links) == 9 * 7 - 1
        assert sorted(tree.dests) == sorted(
            (x, y) for x in range(9) for y in range(7) if (x, y) != src
        )
        for i, (x, y) in enumerate(tree.dests):
            assert tree.hops(i) == abs(x - src[0]) + abs(y - src[1])


def test_background_sends_overlap_with_receives() -> None:
    """Each PE of a ring sends its tile in the background and receives its neighbour's: the shift
    costs one transfer (the longest path: the wrap-around), not a send plus a receive."""
    for width, n in [(2, 10 * B), (6, 50), (16, 200)]:
        reg = Region(0, 0, width, 1)
        last = only(reg, (width - 1, 0))
        ops = [
            Send(0, n, Dest.to(1, 0), mask=~last, background=True),
            Send(0, n, Dest.to(-(width - 1), 0), mask=last, background=True),
            Recv(0, n, (-1, 0), mask=~only(reg, (0, 0))),
            Recv(0, n, (width - 1, 0), mask=only(reg, (0, 0))),
        ]
        res = run(Program("ring", reg, [Phase("shift", ops)]), record_spans=True)
        assert res.cycles == message_cycles(SPEC, width - 1, n)
        blocking = [
            Send(o.color, o.wavelets, o.dest, mask=o.mask) if isinstance(o, Send) else o
            for o in ops
        ]
        if n <= 2 * B:  # blocking sends that fit the buffers cost a send plus a receive
            assert run(Program("ring", reg, [Phase("shift", blocking)])).cycles > res.cycles


def test_background_sends_queue_on_the_output_ramp() -> None:
    reg = Region(0, 0, 2, 1)
    a, b = only(reg, (0, 0)), only(reg, (1, 0))
    n = 30
    ops = [
        Send(0, n, Dest.to(1, 0), mask=a, background=True),
        Send(1, n, Dest.to(1, 0), mask=a, background=True),
        Compute("fmac", 4 * 10, mask=a),  # overlaps with both sends
        Recv(0, n, (-1, 0), mask=b),
        Recv(1, n, (-1, 0), mask=b),
    ]
    res = run(Program("queue", reg, [Phase("p", ops)]), record_spans=True)
    sends = sorted((s.start, s.end) for s in res.spans if s.kind == "send")
    assert sends == [(0, n), (n, 2 * n)]  # the second waits for the ramp, not for the CE
    compute = next(s for s in res.spans if s.kind == "compute")
    assert compute.start == 2 * O  # two instruction issues, then the computation
    assert span_end(res, 1, 0, "recv") == message_cycles(SPEC, 1, n) + n


def test_background_send_still_waits_for_a_late_receiver() -> None:
    reg = Region(0, 0, 2, 1)
    a, b = only(reg, (0, 0)), only(reg, (1, 0))
    n, late = 20 * B, 3000
    ops = [
        Send(0, n, Dest.to(1, 0), mask=a, background=True),
        Compute("add", 4 * (late - O), mask=b),
        Recv(0, n, (-1, 0), mask=b),
    ]
    res = run(Program("late", reg, [Phase("p", ops)]))
    # PE (0, 0) finishes its send only once the receiver has drained all but the buffers
    capacity = 2 * B
    assert res.cycles == late + n - 1
    sender_end = late + (n - 1 - capacity) + 1 - (2 * R + H)
    assert res.cycles >= sender_end
    # and two background senders that never receive are reported, not hung
    stuck = [Send(0, n, Dest.to(1, 0), mask=a, background=True)]
    with pytest.raises(DeadlockError, match="PE\\(0, 0\\) waits for PE\\(1, 0\\)"):
        run_program(Program("stuck", reg, [Phase("p", stuck)]), SPEC)
