"""DCI's mask tree: group SAM masks into nodes, refine overlapping siblings, and unroll the tree into the
``mask_data`` of a DCI record (see ``docs/masks.md``). Pure functions over ``BitMask``; no model, no files.

Both modes run the same steps; ``dci-reference`` adds the release's quirks: the box-corner test inside every
relation (``relations``), children merged by integer key (a colliding key overwrites a node and its subtree),
and children ordered by ``top * 5000 + left``.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from densecaption.masks import Mode
from densecaption.masks.relations import CONTAINED, NEAR_DUPLICATE, SIBLING_OVERLAP, SINGLE_CHILD, BitMask, \
    mostly_contained_in, near_equivalent, overlaps_threshold, union

MIN_AREA = 5000
"""Masks under this many pixels are not shown to annotators: dropped with their subtree, idx still listed."""


@dataclass(eq=False)
class Node:
    """A tree node: its mask, its children, and ``key``, its place in the parent's child dict (the release
    keys children by their index at creation, which is where ``dci-reference``'s collisions come from)."""

    mask: BitMask
    children: list["Node"] = field(default_factory=list)
    key: int = 0


class EmptyBoxError(ValueError):
    """A kept mask with no pixels: its box is empty, which the release refused (the image was skipped)."""


def build_tree(masks: Sequence[BitMask], mode: Mode = "default") -> list[Node]:
    """The whole tree step: masks largest first (stable), grouped level by level, then refined."""
    ordered = sorted(masks, key=lambda m: m.size, reverse=True)
    return refine(group(ordered, mode), mode)


def group(masks: Sequence[BitMask], mode: Mode = "default") -> list[Node]:
    """One level of the tree from masks sorted largest first, each checked against the level's nodes in
    creation order: a near-duplicate (``NEAR_DUPLICATE``) of a node keeps the higher score; a mask mostly
    inside a node (``CONTAINED``) is a duplicate when its size is over ``CONTAINED`` of the node's, else it
    goes to that node's children; otherwise it starts a node. Children are grouped the same way."""
    nodes: list[Node] = []
    inner: list[list[BitMask]] = []
    for m in masks:
        same = next((n for n in nodes if near_equivalent(n.mask, m, NEAR_DUPLICATE, mode)), None)
        if same is not None:
            _keep_better(same, m)
            continue
        at = next((i for i, n in enumerate(nodes) if mostly_contained_in(m, n.mask, CONTAINED, mode)), None)
        if at is None:
            nodes.append(Node(m, key=len(nodes)))
            inner.append([])
        elif m.size / max(nodes[at].mask.size, 1) > CONTAINED:
            _keep_better(nodes[at], m)
        else:
            inner[at].append(m)
    for node, masks_inside in zip(nodes, inner):
        node.children = group(masks_inside, mode)
    return nodes


def _keep_better(node: Node, m: BitMask) -> None:
    if m.score > node.mask.score:  # strictly higher replaces: the earlier mask wins ties
        node.mask = m


def refine(level: list[Node], mode: Mode = "default") -> list[Node]:
    """Join overlapping siblings, children first (changes the nodes in place). Each node, in order, against
    the nodes already placed at its level: overlapping (``SIBLING_OVERLAP``, either side) nodes are replaced
    by one node whose mask is the union, whose children are the node itself plus the absorbed nodes'
    children. Then a node whose only child is near-equivalent to it (``SINGLE_CHILD``) takes that child's
    children instead. In ``dci-reference`` children merge by key, so a colliding key overwrites."""
    placed: dict[int, Node] = {}
    for idx, node in enumerate(level):
        node.children = refine(node.children, mode)
        node.key = idx
        hits = [k for k, other in placed.items() if overlaps_threshold(node.mask, other.mask, SIBLING_OVERLAP, mode)]
        if not hits:
            placed[idx] = node
            continue
        mask, kids = node.mask, {idx: node}
        merged = [node]
        for k in hits:
            other = placed.pop(k)
            mask = union(mask, other.mask)
            merged += other.children
            for child in other.children:
                kids[child.key] = child
        placed[idx] = Node(mask, list(kids.values()) if mode == "dci-reference" else merged, key=idx)
    for node in placed.values():
        if len(node.children) == 1 and near_equivalent(node.mask, node.children[0].mask, SINGLE_CHILD, mode):
            node.children = node.children[0].children
    return list(placed.values())


def _child_order(mode: Mode):
    if mode == "dci-reference":
        return lambda n: n.mask.top * 5000 + n.mask.left  # collides once a photo is over 5000 px wide
    return lambda n: (n.mask.top, n.mask.left)


def to_mask_data(nodes: Sequence[Node], height: int, width: int, mode: Mode = "default",
                 min_area: int = MIN_AREA) -> dict[str, dict[str, Any]]:
    """DCI's ``mask_data`` of a tree: a pre-order walk of the top-level nodes with one ``idx`` counter (every
    visited node takes one), children by top then left; a node under ``min_area`` is dropped with its
    subtree, its idx staying in its parent's ``requirements``. Entries are inserted children first (the key
    order of release files). A kept node without pixels raises ``EmptyBoxError``."""
    out: dict[str, dict[str, Any]] = {}
    counter = 0
    order = _child_order(mode)

    def visit(node: Node, parent: int) -> int:
        nonlocal counter
        idx, counter = counter, counter + 1
        m = node.mask
        if m.size < min_area:
            return idx
        requirements = [visit(child, idx) for child in sorted(node.children, key=order)]
        if m.top >= m.bottom or m.left >= m.right:
            raise EmptyBoxError(f"mask {idx} has {m.size} px but no pixels to bound")
        out[str(idx)] = {
            "idx": idx, "parent": parent, "requirements": requirements,
            "outer_mask": mask_png(m.full(height, width)), "area": int(m.size),
            "bounds": {"topLeft": {"x": m.left, "y": m.top}, "bottomRight": {"x": m.right, "y": m.bottom}},
            "label": "", "caption": "", "mask_quality": 0,
        }
        return idx

    for node in nodes:
        visit(node, -1)
    return out


def mask_png(mask: np.ndarray) -> str:
    """DCI's ``outer_mask``: base64 of a 1-bit (mode '1') PNG at full image size. Saved without PIL's
    ``optimize``, which is about 5x slower on photo-sized masks for no smaller files."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(mask, dtype=bool)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def tree_shape(nodes: Sequence[Node]) -> list:
    """The tree as nested lists of (size, children), for tests and debugging."""
    return [(n.mask.size, tree_shape(n.children)) for n in nodes]
