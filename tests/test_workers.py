"""``data validate`` and ``data stats`` in worker processes give the findings, rows and skips of one process,
in the same order."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.data.dci import DCIDataset
from densecaption.data.findings import SkipLog
from densecaption.data.sample import write_sample
from densecaption.data.stats import StatsRow, add_rows, dataset_stats
from densecaption.data.validate import validate_dataset


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """The sample with one unparsable file and one photo missing."""
    root = write_sample(tmp_path_factory.mktemp("broken"))
    files = sorted((root / "complete").glob("*.json"))
    files[0].write_text("{not json", encoding="utf-8")
    doc = json.loads(files[1].read_text(encoding="utf-8"))
    (root / "photos" / doc["image"]).unlink()
    return root


def test_add_rows_sums_each_count():
    total = [StatsRow("DCI", 1, 2, 30)]
    add_rows(total, [StatsRow("DCI", 2, 3, 40)])  # 1 + 2 images, 2 + 3 captions, 30 + 40 tokens
    assert (total[0].imgs, total[0].caps, total[0].tokens) == (3, 5, 70)


def test_validate_in_workers_finds_the_same_in_the_same_order(broken):
    one = validate_dataset(broken, workers=1)
    two = validate_dataset(broken, workers=2)
    assert one.errors, "the broken copy must have errors"
    assert [f.to_dict() for f in two.findings] == [f.to_dict() for f in one.findings]
    assert two.files_checked == one.files_checked


def test_stats_in_workers_count_and_skip_the_same(broken):
    ds = DCIDataset.open(str(broken))
    one_log, two_log = SkipLog(), SkipLog()
    one = dataset_stats(ds, None, one_log, workers=1)
    two = dataset_stats(ds, None, two_log, workers=2)
    assert [r.to_dict() for r in two] == [r.to_dict() for r in one]
    assert one_log.skipped and [str(e) for e in two_log.skipped] == [str(e) for e in one_log.skipped]


def test_cli_takes_workers(broken):
    runner = CliRunner()
    result = runner.invoke(build_app(), ["data", "stats", str(broken), "--workers", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert '"DCI"' in result.output
    result = runner.invoke(build_app(), ["data", "validate", str(broken), "--workers", "2"])
    assert result.exit_code == 1 and "errors" in result.output

