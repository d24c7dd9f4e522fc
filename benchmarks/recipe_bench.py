"""Speed of the recipe engine: planning a grid recipe, and running a step in this process vs a new process.

    .venv/bin/python benchmarks/recipe_bench.py [--grids 5x4,10x8,20x16] [--calls 5]

Planning: a recipe of one `compose grid` step and P x K `train t2i` steps (`foreach`), planned from scratch
(load the YAML, substitute, render and parse every command line, order, fingerprint
the bundled sample, read the stamps). Counted: steps planned and command lines parsed.

Dispatch: `densecaption data show sample clock` run N times in this process through the command tree (what
the runner does) and N times as `python -m densecaption ...`, which pays the interpreter and imports each time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densecaption.recipes.commands import command_tree  # noqa: E402
from densecaption.recipes.plan import make_plan  # noqa: E402
from densecaption.recipes.runner import execute  # noqa: E402
from densecaption.recipes.schema import load_recipe  # noqa: E402

GRID = """
name: bench
title: planning benchmark
vars: {{precisions: {ps}, submasks: {ks}, model: pixart-alpha}}
steps:
  - id: grid
    run: compose grid
    options: {{data: sample, out: "${{out}}/sets", split: all}}
    inputs: [sample]
    outputs: ["${{out}}/sets"]
    resume: {{}}
  - id: train-p${{p}}_k${{k}}
    foreach: {{p: "${{precisions}}", k: "${{submasks}}"}}
    run: train t2i
    options: {{captions: "${{out}}/sets/p${{p}}_k${{k}}", model: "${{model}}", out: "${{out}}/train/p${{p}}_k${{k}}",
              epochs: 10, batch_size: 32, lr: 1.0e-4}}
    inputs: ["${{out}}/sets/p${{p}}_k${{k}}", "${{model}}"]
    outputs: ["${{out}}/train/p${{p}}_k${{k}}"]
    resume: {{resume: latest}}
    shards: true
"""


def plan_seconds(root: Path, p: int, k: int, tree) -> tuple[float, int]:
    ps = [round(i / max(p - 1, 1), 4) for i in range(p)]
    path = root / f"grid-{p}x{k}.yaml"
    path.write_text(GRID.format(ps=ps, ks=list(range(k))))
    began = time.perf_counter()
    plan = make_plan(load_recipe(path), "full", {}, root / "out", root=tree)
    return time.perf_counter() - began, len(plan.steps)


def dispatch(calls: int, out: Path) -> tuple[float, float]:
    argv = ("data", "show", "sample", "clock", "--out", str(out / "clock.png"))
    tree = command_tree()
    execute(tree, argv)  # the first call pays the imports once, as the runner's first step does
    began = time.perf_counter()
    for _ in range(calls):
        assert execute(tree, argv) is None
    inside = (time.perf_counter() - began) / calls
    began = time.perf_counter()
    for _ in range(calls):
        subprocess.run([sys.executable, "-m", "densecaption", *argv], check=True, capture_output=True)
    outside = (time.perf_counter() - began) / calls
    return inside, outside


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", default="5x4,10x8,20x16")
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        began = time.perf_counter()
        tree = command_tree()
        print(f"command tree built in {time.perf_counter() - began:.2f} s (once per run; imports no torch)")
        print("\n| grid (P x K) | steps planned | command lines parsed | plan seconds | ms per step |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for grid in args.grids.split(","):
            p, k = map(int, grid.split("x"))
            seconds, steps = plan_seconds(root, p, k, tree)
            print(f"| {p} x {k} | {steps} | {steps} | {seconds:.2f} | {1000 * seconds / steps:.1f} |")
        inside, outside = dispatch(args.calls, root)
        print(f"\n| `data show sample clock`, {args.calls} calls | seconds per call |")
        print("| --- | ---: |")
        print(f"| in this process (the runner) | {inside:.2f} |")
        print(f"| new process each time | {outside:.2f} |")


if __name__ == "__main__":
    main()
