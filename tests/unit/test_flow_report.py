"""The flow's report.md: one row per stage with its own held-out metric before and after and its
wall time, links to each stage's curves, and the shared held-out table when rows are given."""

import json

from olmorl.flow_report import write_report


def fake_stage(root, name, kind, key, values, plot):
    run_dir = root / name
    run_dir.mkdir()
    lines = [{"step": i * 10, key: v} for i, v in enumerate(values)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (run_dir / "stage_done.json").write_text(json.dumps({"checkpoint": "x", "seconds": 12.4}))
    (run_dir / plot).write_bytes(b"png")
    return name, kind, run_dir, run_dir / "checkpoints" / "step_000010"


def test_report_rows_and_curves(tmp_path, tiny_model_dir):
    stages = [
        fake_stage(tmp_path, "pretrain", "pretrain", "eval/loss", [6.5, 3.2, 2.0], "pretrain.png"),
        fake_stage(tmp_path, "dpo", "dpo", "eval/rewards/accuracy", [0.0, 0.9], "dpo.png"),
    ]
    report = write_report(tmp_path, stages, tiny_model_dir).read_text()
    assert "| pretrain | pretrain | held-out loss | 6.500 | 2.000 | 12 s |" in report
    assert "| dpo | dpo | held-out preference accuracy | 0.000 | 0.900 | 12 s |" in report
    assert "![pretrain](pretrain/pretrain.png)" in report and "![dpo](dpo/dpo.png)" in report
    assert "Held-out accuracy" not in report  # no rows given


def test_held_out_table_measures_the_start_and_every_stage(tmp_path, tiny_model_dir):
    stage = fake_stage(tmp_path, "sft", "sft", "eval/loss", [3.0, 1.0], "sft.png")
    stage = (*stage[:3], tiny_model_dir)
    rows = [
        {"messages": [{"role": "user", "content": "What is 1 + 1?"}], "ground_truth": "2"},
        {"messages": [{"role": "user", "content": "What is 2 + 2?"}], "ground_truth": "4"},
    ]
    report = write_report(tmp_path, [stage], tiny_model_dir, rows, max_new_tokens=4)
    table = report.read_text().split("## Held-out accuracy")[1]
    # A random model answers neither; what matters is one line per checkpoint, both formats.
    assert "| start | 0.00 | 0.00 |" in table and "| sft | 0.00 | 0.00 |" in table
