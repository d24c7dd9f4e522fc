"""Mask relations, tree steps and edge points on constructed masks, with hand-worked answers, in both modes."""

from __future__ import annotations

import random

import numpy as np
import pytest

from densecaption.masks.edges import EdgeSettings, edge_prompts, grid_points, pick_edge_points
from densecaption.masks.relations import BitMask, corners_meet, mostly_contained_in, near_equivalent, overlap, \
    overlaps_threshold, union, xor
from densecaption.masks.tree import Node, build_tree, group, refine, to_mask_data, tree_shape

H = W = 100


def mask(*rects: tuple[int, int, int, int], score: float = 1.0, height: int = H, width: int = W) -> BitMask:
    """The union of rectangles (top, left, bottom, right), bottom/right exclusive."""
    full = np.zeros((height, width), dtype=bool)
    for t, l, b, r in rects:
        full[t:b, l:r] = True
    return BitMask.from_full(full, score)


# --------------------------------------------------------------------------------------------- relations
def test_overlap_and_xor_of_two_squares():
    a, b = mask((0, 0, 10, 10)), mask((5, 5, 15, 15))
    # 100 px each; they share rows 5-9 x cols 5-9 = 25 px; xor = 100 + 100 - 2 * 25 = 150
    assert (a.pixels, overlap(a, b), xor(a, b)) == (100, 25, 150)
    assert (a.tlbr, a.bits.shape) == ((0, 0, 10, 10), (10, 10))
    # contained share 25 / (100 + 1) = 0.2475: over 0.20, not over 0.25
    assert mostly_contained_in(a, b, 0.20) and not mostly_contained_in(a, b, 0.25)


def test_near_equivalent_either_side_of_095():
    a = mask((0, 0, 20, 20))  # 400 px, s = 401
    b = mask((0, 0, 19, 20), (19, 0, 20, 1))  # 380 + 1 = 381 px, s = 382: 382/401 = 0.9526; xor 19/382 = 0.0497
    c = mask((0, 0, 18, 20), (18, 0, 19, 19))  # 360 + 19 = 379 px, s = 380: 380/401 = 0.9476 < 0.95
    for mode in ("default", "dci-reference"):
        assert near_equivalent(a, b, 0.95, mode) and near_equivalent(b, a, 0.95, mode)
        assert not near_equivalent(a, c, 0.95, mode)


def test_reference_box_corner_test_quirks():
    left, right = mask((0, 0, 10, 10)), mask((50, 50, 60, 60))  # disjoint, 100 px each
    # no corner of one box lies in the other: the reference counts xor = 0, so they are "near-equivalent"
    assert not corners_meet(left, right)
    assert near_equivalent(left, right, 0.95, "dci-reference")
    assert not near_equivalent(left, right, 0.95, "default")  # xor 200 / 101 > 0.05
    across, down = mask((45, 0, 55, 100)), mask((0, 45, 100, 55))  # a plus sign: 100 px shared
    assert overlap(across, down) == 100 and overlap(across, down, "dci-reference") == 0
    assert overlaps_threshold(across, down, 0.03) and not overlaps_threshold(across, down, 0.03, "dci-reference")


def test_union_takes_both_and_the_mean_score():
    u = union(mask((0, 0, 10, 10), score=0.4), mask((5, 5, 15, 15), score=0.8))
    # 100 + 100 - 25 = 175 px in the box rows 0-14 x cols 0-14
    assert (u.pixels, u.size, u.tlbr, u.score) == (175, 175, (0, 0, 15, 15), pytest.approx(0.6))


# --------------------------------------------------------------------------------------------- grouping
def test_near_duplicate_keeps_the_strictly_higher_score():
    a = mask((0, 0, 20, 20), score=0.5)
    b = mask((0, 0, 19, 20), (19, 0, 20, 1), score=0.9)
    nodes = group([a, b])
    assert len(nodes) == 1 and nodes[0].mask is b and nodes[0].children == []
    tie = mask((0, 0, 19, 20), (19, 0, 20, 1), score=0.5)
    assert group([a, tie])[0].mask is a  # equal score: the earlier mask stays


def test_containment_either_side_of_090():
    parent = mask((0, 0, 50, 100))  # 5000 px
    # 910 px inside (rows 40-49 x cols 0-90) + 90 outside (row 60, cols 0-89): 910 / 1001 = 0.909 > 0.90
    inside = mask((40, 0, 50, 91), (60, 0, 61, 90))
    # 900 px inside + 100 outside: 900 / 1001 = 0.899, not contained: a node of its own
    outside = mask((40, 0, 50, 90), (60, 0, 61, 100))
    for mode in ("default", "dci-reference"):
        assert tree_shape(group([parent, inside], mode)) == [(5000, [(1000, [])])]
        assert tree_shape(group([parent, outside], mode)) == [(5000, []), (1000, [])]


def test_contained_mask_nearly_as_large_is_a_duplicate():
    parent = mask((0, 0, 100, 100), score=0.5)  # 10000 px
    child = mask((0, 0, 90, 100), score=0.9)  # 9000 / 10000 = 0.90, not over 0.90: a child
    dup = mask((0, 0, 91, 100), score=0.9)  # 9100 / 10000 = 0.91 > 0.90: the same mask, the better score wins
    assert tree_shape(group([parent, child])) == [(10000, [(9000, [])])]
    nodes = group([parent, dup])
    assert tree_shape(nodes) == [(9100, [])] and nodes[0].mask is dup


def test_nesting_three_levels_and_sorting_by_size():
    big, mid, small = mask((0, 0, 100, 100)), mask((0, 0, 50, 100)), mask((0, 0, 20, 50))
    # given smallest first, build_tree sorts largest first: 10000 > 5000 > 1000, each mostly inside the last
    assert tree_shape(build_tree([small, mid, big])) == [(10000, [(5000, [(1000, [])])])]


def test_disjoint_similar_masks_reference_drops_one():
    a, b = mask((0, 0, 10, 10), score=0.5), mask((50, 50, 60, 60), score=0.9)
    assert tree_shape(group([a, b])) == [(100, []), (100, [])]
    ref = group([a, b], "dci-reference")
    assert len(ref) == 1 and ref[0].mask is b


# --------------------------------------------------------------------------------------------- refine
def test_sibling_overlap_at_003():
    a = mask((0, 0, 10, 100))  # 1000 px, s = 1001
    joined = mask((9, 69, 49, 100))  # 40 x 31 = 1240 px; shares row 9 x cols 69-99 = 31 px: 31 / 1001 = 0.031
    apart = mask((9, 70, 49, 100))  # 40 x 30 = 1200 px; shares 30 px: 30 / 1001 = 0.02997, 30 / 1201 = 0.025
    for mode in ("default", "dci-reference"):
        out = refine([Node(a), Node(joined)], mode)
        # one node: the union (1000 + 1240 - 31 = 2209 px) with the later node as its child; `a` vanishes
        assert tree_shape(out) == [(2209, [(1240, [])])]
        assert tree_shape(refine([Node(a), Node(apart)], mode)) == [(1000, []), (1200, [])]


def test_crossing_siblings_join_only_in_default():
    across, down = mask((45, 0, 55, 100)), mask((0, 45, 100, 55))
    assert tree_shape(refine([Node(across), Node(down)])) == [(1900, [(1000, [])])]  # 1000 + 1000 - 100
    assert tree_shape(refine([Node(across), Node(down)], "dci-reference")) == [(1000, []), (1000, [])]


def test_single_child_collapse_either_side_of_093():
    parent = mask((0, 0, 100, 100))  # s = 10001
    grandchild = mask((0, 0, 10, 10))
    # s = 9401: 9401 / 10001 = 0.940 >= 0.93 and xor 600 / 9401 = 0.064 <= 0.07: the parent takes its grandchild
    close = Node(mask((0, 0, 94, 100)), [Node(grandchild)])
    assert tree_shape(refine([Node(parent, [close])])) == [(10000, [(100, [])])]
    # s = 9201: 9201 / 10001 = 0.920 < 0.93: the tree stays
    far = Node(mask((0, 0, 92, 100)), [Node(grandchild)])
    assert tree_shape(refine([Node(parent, [far])])) == [(10000, [(9200, [(100, [])])])]


def _collision_level() -> list[Node]:
    kids = [Node(mask((0, 0, 10, 10))), Node(mask((0, 20, 10, 30))), Node(mask((20, 0, 30, 10)))]
    n0 = Node(mask((0, 0, 40, 40)), kids)  # 1600 px; its children get keys 0, 1, 2
    n1 = Node(mask((60, 60, 70, 70)))  # far from the others
    n2 = Node(mask((30, 30, 50, 50)))  # 400 px; shares rows 30-39 x cols 30-39 = 100 px with n0 (top-left inside)
    return [n0, n1, n2]


def test_key_collision_overwrites_in_reference_only():
    # n2 (key 2) absorbs n0: children {2: n2} updated with n0's {0, 1, 2}: key 2 is n0's third child, not n2
    ref = refine(_collision_level(), "dci-reference")
    assert [n.mask.size for n in ref] == [100, 1600 + 400 - 100]
    assert [(c.mask.top, c.mask.left, c.mask.size) for c in ref[1].children] == [(20, 0, 100), (0, 0, 100), (0, 20, 100)]
    fixed = refine(_collision_level())
    assert [(c.mask.top, c.mask.left, c.mask.size) for c in fixed[1].children] == \
        [(30, 30, 400), (0, 0, 100), (0, 20, 100), (20, 0, 100)]


# --------------------------------------------------------------------------------------------- mask_data
def test_mask_data_drops_small_masks_but_keeps_their_idx():
    small_child = Node(mask((0, 0, 10, 10)), [Node(mask((0, 0, 5, 5)))])  # 100 px < 5000: dropped with its child
    big_child = Node(mask((50, 0, 100, 100)))  # 5000 px: kept (not under 5000)
    top = Node(mask((0, 0, 100, 100)), [big_child, small_child])
    other = Node(mask((0, 0, 100, 100)))
    for mode in ("default", "dci-reference"):
        data = to_mask_data([top, other], H, W, mode)
        # pre-order: top 0, children by (top, left): small 1 (dropped, its child never visited), big 2; other 3
        assert list(data) == ["2", "0", "3"]  # children before parents
        assert data["0"]["requirements"] == [1, 2] and data["0"]["parent"] == -1
        assert data["2"]["parent"] == 0 and data["2"]["area"] == 5000
        assert data["2"]["bounds"] == {"topLeft": {"x": 0, "y": 50}, "bottomRight": {"x": 100, "y": 100}}
        assert (data["3"]["label"], data["3"]["caption"], data["3"]["mask_quality"]) == ("", "", 0)


def test_children_order_collides_past_5000_px_wide_in_reference():
    width = 6000
    right = Node(mask((0, 5500, 2, 5600), height=4, width=width))  # top 0, left 5500: key 0 * 5000 + 5500 = 5500
    below = Node(mask((1, 0, 3, 100), height=4, width=width))  # top 1, left 0: key 5000, sorts first
    parent = Node(mask((0, 0, 4, width), height=4, width=width), [right, below])
    ref = to_mask_data([parent], 4, width, "dci-reference", min_area=0)
    fixed = to_mask_data([parent], 4, width, "default", min_area=0)
    assert ref["0"]["requirements"] == [1, 2] and ref["1"]["bounds"]["topLeft"] == {"x": 0, "y": 1}
    assert fixed["1"]["bounds"]["topLeft"] == {"x": 5500, "y": 0}


# --------------------------------------------------------------------------------------------- points
class _FixedRandom:
    """No shuffle; random() always 0.0, so every jitter is (0.5 - 0) * 35 = +17.5 on each axis."""

    def shuffle(self, items: list) -> None:
        pass

    def random(self) -> float:
        return 0.0


def test_edge_points_jitter_and_axis_swapped_clamp():
    edges = np.zeros((40, 100), dtype=bool)
    edges[25, 50] = True
    s = EdgeSettings(extra=1)
    # default: x 50 + 17.5 = 67.5 -> 67 (within [10, 90]); y 25 + 17.5 = 42.5 -> clamped to 40 - 10 = 30
    assert pick_edge_points(edges, _FixedRandom(), "default", s) == [(50, 25), (67, 30)]
    # reference: y clamped with the width (to [10, 90]: 42), x with the height (to [10, 30]: both points 30)
    assert pick_edge_points(edges, _FixedRandom(), "dci-reference", s) == [(30, 25), (30, 42)]


def test_edge_points_window_and_border():
    s = EdgeSettings(extra=0)
    edges = np.zeros((40, 100), dtype=bool)
    edges[20, [30, 42]] = True  # popped from the end: (42, 20) first, clearing cols 30-53: (30, 20) goes
    assert pick_edge_points(edges, _FixedRandom(), "default", s) == [(42, 20)]
    edges[20, 30], edges[20, 29] = False, True  # 13 px away: outside the cleared window
    assert pick_edge_points(edges, _FixedRandom(), "default", s) == [(42, 20), (29, 20)]
    border = np.zeros((40, 100), dtype=bool)
    border[20, [9, 90, 91]] = True  # x < 10 and x > 100 - 10 are skipped; x = 90 is kept
    assert pick_edge_points(border, _FixedRandom(), "default", s) == [(90, 20)]


def test_reference_prompts_only_the_first_edge_point():
    points = pick_edge_points(np.eye(60, dtype=bool), random.Random(0), "default")
    assert len(points) > 9 and edge_prompts(points) == points
    assert edge_prompts(points, "dci-reference") == points[:1]


def test_grid_points_are_cell_centres():
    # 2 per side on 100 x 40: x at 0.25 and 0.75 of 100, y at 0.25 and 0.75 of 40, row by row
    assert grid_points(100, 40, 2) == [(25.0, 10.0), (75.0, 10.0), (25.0, 30.0), (75.0, 30.0)]


# --------------------------------------------------------------------------------------------- SAM clean-up
def test_small_holes_and_islands():
    from densecaption.masks.sam import fill_small_regions

    bits = np.zeros((10, 12), dtype=bool)
    bits[1:9, 1:7] = True  # an 8 x 6 = 48 px block ...
    bits[4, 3] = False  # ... with a 1 px hole
    bits[2:4, 9:11] = True  # and a 2 x 2 = 4 px island
    filled, changed = fill_small_regions(bits, 5, "holes")
    # the hole (1 px < 5) is filled; the background touching the edge is kept however small it looks here
    assert changed and filled.sum() == 48 + 4 and filled[4, 3] and not filled[0, 0]
    cut, changed = fill_small_regions(filled, 5, "islands")
    assert changed and cut.sum() == 48 and not cut[2:4, 9:11].any()  # the 4 px island goes, 48 px stays
    assert fill_small_regions(cut, 5, "islands") == (cut, False)
    # a 2 px background pocket cut off by the photo's left edge (the crop's left side is not open) is a hole
    pocket = np.ones((6, 6), dtype=bool)
    pocket[2:4, 0] = False
    assert not fill_small_regions(pocket, 5, "holes")[1]  # all sides open: it joins the outside background
    closed, changed = fill_small_regions(pocket, 5, "holes", (True, True, False, True))
    assert changed and closed.all()


class _RecordingSam:
    """Stands in for ``SamRunner``: records the prompts of each pass, returns no masks."""

    def __init__(self):
        self.points, self.passes = [], []

    def embed(self, image, points):
        self.points = list(points)
        return None, None

    def generate(self, embedding, inputs, start, stop, settings):
        self.passes.append((start, stop))
        return []


def test_photo_masks_prompts_the_grid_then_edge_points():
    from densecaption.masks.sam import SamSettings, photo_masks

    image = np.zeros((60, 80, 3), dtype=np.uint8)
    image[20:40, 30:50] = 255  # a white square: Canny edges on its outline
    settings = SamSettings(points_per_side=2)
    default, ref = _RecordingSam(), _RecordingSam()
    photo_masks(default, image, "default", settings, rng=random.Random(0))
    photo_masks(ref, image, "dci-reference", settings, rng=random.Random(0))
    # grid: 2 x 2 cell centres of 80 x 60; then every edge point (9 per accepted point) or only the first
    assert default.points[:4] == ref.points[:4] == [(20.0, 15.0), (60.0, 15.0), (20.0, 45.0), (60.0, 45.0)]
    assert len(default.points) > 4 + 9 and (len(default.points) - 4) % 9 == 0
    assert len(ref.points) == 5 and ref.passes == [(0, 4), (4, 5)]
    assert default.passes == [(0, 4), (4, len(default.points))]
