"""The decontamination bench: every planted copy is found at every size, and the table has a line
per size of each series. Its timings are measured by running it, never asserted here."""

from typer.testing import CliRunner

from olmorl.bench.decontamination import bench_decontamination, format_scaling
from olmorl.cli import app


def test_tiny_sizes_find_every_planted_row_and_report_each_size():
    points = bench_decontamination(train_rows=200, eval_rows=20, scales=(1, 2))
    assert [(p.series, p.scale, p.train_rows, p.eval_rows) for p in points] == [
        ("train", 1, 200, 20),
        ("train", 2, 400, 20),
        ("eval", 1, 200, 20),
        ("eval", 2, 200, 40),
    ]
    assert [p.planted for p in points] == [2, 4, 2, 2]
    assert all(p.removed == p.planted for p in points)
    assert all(p.seconds > 0 and p.heap_mib > 0 for p in points)

    header, *lines = format_scaling(points).splitlines()
    assert " ".join(header.split()) == (
        "series scale train rows eval rows seconds s/1k rows heap MiB rss MiB time x heap x removed"
    )
    assert [line.split()[:4] for line in lines] == [
        ["train", "1", "200", "20"],
        ["train", "2", "400", "20"],
        ["eval", "1", "200", "20"],
        ["eval", "2", "200", "40"],
    ]
    # Each series' first size is its own baseline.
    assert lines[0].split()[8:10] == ["1.00", "1.00"]
    assert lines[2].split()[8:10] == ["1.00", "1.00"]
    assert [line.split()[-1] for line in lines] == ["2/2", "4/4", "2/2", "2/2"]


def test_the_command_rejects_scales_that_are_not_positive_integers():
    for scales in ("1,x", "0,2", ""):
        result = CliRunner().invoke(app, ["bench", "decontamination", "--scales", scales])
        assert result.exit_code == 2, scales
        assert "--scales" in result.output
