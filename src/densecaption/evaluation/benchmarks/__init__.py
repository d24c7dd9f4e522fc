"""The registered benchmarks: one module in this folder and one entry below each.

Each target is a ``Benchmark`` subclass (see ``densecaption.evaluation.benchmark``); ``bench TASK`` and
``report TASK`` are built from these entries, and the contract tests run every one of them.
"""

from __future__ import annotations

from densecaption.registry import Registry

BENCHMARKS: Registry = Registry("benchmark")
BENCHMARKS.register("sdci", "densecaption.evaluation.benchmarks.sdci:SDCI",
                    summary="the six sDCI tests of the DCI paper (subcrop-caption matching and negatives)")
BENCHMARKS.register("sdci-full", "densecaption.evaluation.benchmarks.sdci_full:SDCIFull",
                    summary="sDCI's entries with the full DCI texts beyond 77 tokens: SCM, retrieval, by length "
                            "(this project's design)")
BENCHMARKS.register("aro", "densecaption.evaluation.benchmarks.aro:ARO",
                    summary="ARO: VG-Relation, VG-Attribution, COCO- and Flickr30k-Order (DCI Table 3)")
BENCHMARKS.register("sugarcrepe", "densecaption.evaluation.benchmarks.sugarcrepe:SugarCrepe",
                    summary="SugarCrepe: seven hard-negative types on COCO val2017")
BENCHMARKS.register("vlchecklist", "densecaption.evaluation.benchmarks.vlchecklist:VLCheckList",
                    summary="VL-CheckList: Object, Attribute, Relation as DCI runs it (DCI Table 3)")
BENCHMARKS.register("winoground", "densecaption.evaluation.benchmarks.winoground:Winoground",
                    summary="Winoground: text, image and group scores")
BENCHMARKS.register("zeroshot", "densecaption.evaluation.benchmarks.zeroshot:ZeroShot",
                    summary="zero-shot classification of an ImageNet-style folder through clip_benchmark (DCI "
                            "Table 8)")
BENCHMARKS.register("linear-probe", "densecaption.evaluation.benchmarks.linear_probe:LinearProbe",
                    summary="linear probe on frozen image embeddings of an ImageNet-style folder through "
                            "clip_benchmark (DCI Table 9's protocol)")
