"""The `olmorl` command. Parses and validates before importing torch, vLLM or Ray, so a typo in a
recipe fails in about a second; each subcommand imports its heavy machinery only when it runs.
"""

import datetime
from pathlib import Path
from typing import Annotated

import typer

from olmorl.config import (
    ConfigError,
    DPOConfig,
    PretrainConfig,
    RLConfig,
    SFTConfig,
    load_config,
    parse_overrides,
    write_resolved_config,
)
from olmorl.config.describe import config_options
from olmorl.run_errors import RunFailed

app = typer.Typer(
    name="olmorl",
    help="Open post-training for Olmo-style models: OlmoRL (GRPO) on Ray, vLLM and FSDP2.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
data_app = typer.Typer(help="Make and check data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
bench_app = typer.Typer(
    help="Throughput benchmarks, as ratios against a baseline in the same run.",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")


def _options_epilog(config_class) -> str:
    # "\b" stops click from re-wrapping the table.
    rows = [f"  {o.key:<44} {o.default:<10} {o.doc}" for o in config_options(config_class)]
    return (
        "\b\nConfig keys (set in the YAML or as KEY=VALUE overrides; default, meaning):\n"
        + "\n".join(rows)
    )


def _load_bench_config(config: Path, overrides: list[str] | None) -> RLConfig:
    """A bench's recipe, with its preset model written first when the recipe names one."""
    cfg = _load(RLConfig, config, overrides)
    _write_missing_tiny_model(cfg)
    return cfg


def _load(config_class, config: Path, overrides: list[str] | None):
    """The recipe with its overrides, or exit 2 with the loader's one-line error."""
    try:
        return load_config(config_class, config, overrides or [])
    except ConfigError as e:
        raise _fail(str(e)) from None


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code=2)


def _stopped(error: Exception) -> typer.Exit:
    """A run that started and then failed: its message, exit status 1."""
    typer.echo(f"run stopped: {error}", err=True)
    return typer.Exit(code=1)


_RESUME_HELP = (
    "Continue the run from its newest intact checkpoint: run.name's directory, or else the "
    "newest run of this recipe under run.output_dir."
)


_VERBOSE_HELP = (
    "Print every actor's output (vLLM, Ray, learners) on the console, as run.verbose=true; by "
    "default it goes to the run's logs/ and the console shows warnings and errors only."
)


def _run_dir(cfg, config: Path, resume: bool) -> Path:
    root = Path(cfg.run.output_dir)
    if cfg.run.name:
        return root / cfg.run.name
    if resume:
        earlier = sorted(root.glob(f"{config.stem}-*/checkpoints"))
        if not earlier:
            raise _fail(f"--resume: no run of {config.stem} with checkpoints under {root}")
        return earlier[-1].parent
    return root / _default_run_name(config)


@app.command(epilog=_options_epilog(RLConfig))
def rl(
    config: Annotated[
        Path, typer.Argument(help="Recipe YAML, e.g. recipes/tiny/rl_target_token.yaml.")
    ],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Dotted overrides such as algo.clip_high=0.3.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate, write the resolved config, and stop.")
    ] = False,
    resume: Annotated[bool, typer.Option("--resume", help=_RESUME_HELP)] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help=_VERBOSE_HELP)] = False,
) -> None:
    """Run OlmoRL (RLVR) training from a recipe."""

    def run(cfg, run_dir, resume):
        from olmorl.rl.loop import run_rl

        return run_rl(cfg, run_dir, resume)

    _run_job(RLConfig, config, overrides, dry_run, resume, verbose, run, "reward plot")


def _run_job(
    config_class,
    config: Path,
    overrides,
    dry_run: bool,
    resume: bool,
    verbose: bool,
    run,
    plot: str,
) -> None:
    """Loads the recipe, runs `run(cfg, run_dir, resume)` and says where its outputs are."""
    cfg = _load(
        config_class, config, [*(overrides or []), *(["run.verbose=true"] if verbose else [])]
    )
    run_dir = _run_dir(cfg, config, resume)
    if dry_run:
        typer.echo(f"config ok; resolved config written to {write_resolved_config(cfg, run_dir)}")
        return
    from olmorl.data.loading import DataError
    from olmorl.ray_init import ClusterTooSmall
    from verifiers.base import VerifierUnavailable

    _write_missing_tiny_model(cfg)
    if not cfg.run.verbose:
        typer.echo(f"actor logs (vLLM, Ray, learners): {run_dir / 'logs'}; --verbose prints them")
    try:
        result = run(cfg, run_dir, resume)
    except (DataError, VerifierUnavailable, ClusterTooSmall) as e:
        raise _fail(str(e)) from None
    except RunFailed as e:
        raise _stopped(e) from None
    if result.resumed_from:
        typer.echo(f"resumed after step {result.resumed_from}")
    typer.echo(f"run directory: {result.run_dir}")
    typer.echo(f"metrics:       {result.metrics}")
    typer.echo(f"{plot + ':':<15}{result.plot}")
    if result.checkpoints:
        typer.echo(f"checkpoint:    {result.checkpoints[-1]}")


def _write_missing_tiny_model(cfg) -> None:
    if cfg.model.preset and not Path(cfg.model.path).exists():
        from olmorl.models.tiny import ensure_tiny_model

        typer.echo(
            f"writing a random {cfg.model.preset} Olmo3 and its tokenizer to {cfg.model.path}"
        )
        ensure_tiny_model(cfg.model.path, cfg.model.preset)


@app.command()
def flow(
    config: Annotated[
        Path, typer.Argument(help="Flow YAML, e.g. recipes/tiny/flow_target_token.yaml.")
    ],
    verbose: Annotated[bool, typer.Option("--verbose", help=_VERBOSE_HELP)] = False,
) -> None:
    """Run a flow's stages (pretraining, SFT, DPO, RL) in order, each from the last one's
    checkpoint. Run it again to skip the finished stages and resume the one that stopped."""
    from olmorl.config.flow import FlowConfig
    from olmorl.data.loading import DataError
    from olmorl.flow import run_flow
    from olmorl.ray_init import ClusterTooSmall
    from verifiers.base import VerifierUnavailable

    flow_cfg = _load(FlowConfig, config, [])
    flow_dir = Path(flow_cfg.output_dir) / (flow_cfg.name or config.stem)
    stage_overrides = ["run.verbose=true"] if verbose else []
    flow_cfg = flow_cfg.model_copy(
        update={
            "stages": [
                s.model_copy(update={"overrides": [*s.overrides, *stage_overrides]})
                for s in flow_cfg.stages
            ]
        }
    )
    try:
        results = run_flow(flow_cfg, flow_dir, _write_missing_tiny_model, typer.echo)
    except (DataError, VerifierUnavailable, ClusterTooSmall, ConfigError) as e:
        raise _fail(str(e)) from None
    except RunFailed as e:
        raise _stopped(e) from None
    typer.echo(f"flow directory: {flow_dir}")
    for result in results:
        typer.echo(f"{result.stage + ':':<15}{result.checkpoint}")
    typer.echo(f"report:        {_flow_report(flow_cfg, flow_dir, results)}")


def _flow_report(flow_cfg, flow_dir: Path, results) -> Path:
    import json

    from olmorl.flow import STAGE_CONFIGS
    from olmorl.flow_report import write_report

    first = flow_cfg.stages[0]
    start = load_config(STAGE_CONFIGS[first.kind], first.recipe, first.overrides).model.path
    rows = []
    if flow_cfg.report_eval:
        rows = [json.loads(line) for line in Path(flow_cfg.report_eval).read_text().splitlines()]
    stages = [
        (r.stage, s.kind, r.run_dir, r.checkpoint)
        for s, r in zip(flow_cfg.stages, results, strict=True)
    ]
    return write_report(flow_dir, stages, Path(start), rows)


def _offline_command(name: str, config_class, module: str, help_text: str, example: str) -> None:
    """Registers `olmorl NAME CONFIG [overrides] [--dry-run] [--resume]` for an offline trainer
    whose `olmorl.train.<module>` defines `run_<module>(cfg, run_dir, resume)`."""

    def command(
        config: Annotated[Path, typer.Argument(help=f"Recipe YAML, e.g. {example}.")],
        overrides: Annotated[list[str] | None, typer.Argument(help="Dotted overrides.")] = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Validate, write the resolved config, and stop.")
        ] = False,
        resume: Annotated[bool, typer.Option("--resume", help=_RESUME_HELP)] = False,
        verbose: Annotated[bool, typer.Option("--verbose", help=_VERBOSE_HELP)] = False,
    ) -> None:
        import importlib

        run = getattr(importlib.import_module(f"olmorl.train.{module}"), f"run_{module}")
        _run_job(config_class, config, overrides, dry_run, resume, verbose, run, "loss plot")

    command.__doc__ = help_text
    app.command(name, epilog=_options_epilog(config_class))(command)


_offline_command(
    "sft",
    SFTConfig,
    "sft",
    "Supervised fine-tuning on chat data (loss on assistant turns).",
    "recipes/tiny/sft_copy.yaml",
)
_offline_command(
    "dpo",
    DPOConfig,
    "dpo",
    "Direct preference optimisation (dpo, dpo_norm or simpo) on pairs.",
    "recipes/tiny/dpo_copy.yaml",
)
_offline_command(
    "pretrain",
    PretrainConfig,
    "pretrain",
    "Causal-LM training on a weighted mix of token sources: pretraining, midtraining and "
    "long-context extension.",
    "recipes/tiny/pretrain.yaml",
)


@app.command("eval")
def eval_checkpoint(
    checkpoint: Annotated[Path, typer.Argument(help="Hugging Face checkpoint directory.")],
    data: Annotated[Path, typer.Argument(help="Held-out prompts (RL row schema), e.g. .jsonl.")],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="Dotted overrides, e.g. eval.samples_per_prompt=8 eval.temperature=1."),
    ] = None,
    recipe: Annotated[
        Path | None,
        typer.Option(
            help="Recipe for the engines, verifiers and eval settings; default: the config.yaml "
            "of the run the checkpoint belongs to."
        ),
    ] = None,
) -> None:
    """Held-out reward and pass@k of a checkpoint, as an RL run's own evaluation logs them."""
    recipe = recipe or checkpoint.resolve().parent.parent / "config.yaml"
    if not recipe.is_file():
        raise _fail(f"no recipe: {recipe} does not exist; name one with --recipe")
    cfg = _load(
        RLConfig, recipe, [f"model.path={checkpoint}", f"eval.data=[{data}]", *(overrides or [])]
    )
    from olmorl.data.loading import DataError
    from olmorl.ray_init import ClusterTooSmall
    from olmorl.rl.eval_job import EvalSetupError, evaluate_checkpoint

    try:
        metrics = evaluate_checkpoint(cfg)
    except (DataError, EvalSetupError, ClusterTooSmall) as e:
        raise _fail(str(e)) from None
    for key, value in metrics.items():
        typer.echo(f"{key:<32} {value:.4f}")


@app.command("plan")
def plan(
    config: Annotated[
        Path, typer.Argument(help="RL recipe YAML, e.g. recipes/olmo3/think_7b.yaml.")
    ],
    overrides: Annotated[list[str] | None, typer.Argument(help="Dotted overrides.")] = None,
    cluster: Annotated[
        str, typer.Option(help="NODESxGPUS[:GiB per GPU], e.g. 8x8:80 (memory default 80).")
    ] = "1x8:80",
) -> None:
    """Whether an RL recipe fits a cluster, before anything starts: which actors go on which
    node, what a learner rank and an engine GPU hold, and, if it does not fit, why and what would.
    Exits 1 when it does not fit."""
    from olmorl.plan.planner import ClusterShape, plan_rl

    cfg = _load(RLConfig, config, overrides)
    try:
        result = plan_rl(cfg, ClusterShape.parse(cluster))
    except ValueError as e:
        raise _fail(str(e)) from None
    for line in result.report:
        typer.echo(line)
    if result.problems:
        for problem in result.problems:
            typer.echo(f"does not fit: {problem}", err=True)
        raise typer.Exit(code=1)
    typer.echo("fits")


@app.command("tiny-model")
def tiny_model(
    out_dir: Annotated[Path, typer.Argument(help="Directory to write the model and tokenizer to.")],
    preset: Annotated[str, typer.Option(help="Size preset: tiny or small.")] = "tiny",
    seed: Annotated[int, typer.Option(help="Seed of the random initialisation.")] = 0,
) -> None:
    """Write a randomly initialised small Olmo3 and its tokenizer (no hub needed)."""
    from olmorl.models.tiny import write_tiny_model

    try:
        path = write_tiny_model(out_dir, preset=preset, seed=seed)
    except ValueError as e:
        raise _fail(str(e)) from None
    typer.echo(f"wrote tiny Olmo3 ({preset}) to {path}")


@app.command()
def verify(
    rows: Annotated[Path, typer.Argument(help="JSONL rows with dataset, ground_truth, response.")],
    out: Annotated[
        Path | None, typer.Option(help="Write the rows back with score and reason.")
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            help="A verifier option as VERIFIER.KEY=VALUE, e.g. judge.url=http://host:8000/v1.",
        ),
    ] = None,
) -> None:
    """Score responses with the verifiers their rows name, and summarise per verifier."""
    from olmorl.verify_file import VerifyInputError, verify_file
    from verifiers import VerifierConfigError

    options: dict[str, dict] = {}
    try:
        for key, value in parse_overrides(option or []).items():
            name, _, field = key.partition(".")
            if not field or "." in field:
                raise ConfigError(f"option '{key}': expected VERIFIER.KEY=VALUE")
            options.setdefault(name, {})[field] = value
        summary = verify_file(rows, out, options)
    except (ConfigError, VerifierConfigError, VerifyInputError) as e:
        raise _fail(str(e)) from None
    typer.echo(summary)


@app.command()
def soup(
    checkpoints: Annotated[
        list[Path], typer.Argument(help="Hugging Face checkpoint directories (safetensors).")
    ],
    out: Annotated[Path, typer.Option(help="Directory to write the averaged checkpoint to.")],
    weights: Annotated[
        str | None,
        typer.Option(help="Comma-separated positive weights, one per checkpoint; normalised."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace --out if it exists and is not empty.")
    ] = False,
) -> None:
    """Average checkpoints of one architecture (a model soup), as Olmo 3 merges its SFT runs.

    Config, generation config and tokenizer come from the first checkpoint.
    """
    from olmorl.soup import SoupError, parse_weights, soup_checkpoints

    try:
        raw = None if weights is None else parse_weights(weights, len(checkpoints))
        path = soup_checkpoints(checkpoints, out, raw, force=force)
    except SoupError as e:
        raise _fail(str(e)) from None
    how = "mean" if raw is None else "weights " + ", ".join(f"{w / sum(raw):.4g}" for w in raw)
    typer.echo(f"wrote the soup of {len(checkpoints)} checkpoints ({how}) to {path}")


@bench_app.command("rollout")
def bench_rollout(
    config: Annotated[
        Path, typer.Argument(help="Recipe YAML whose model, data and sampling settings to use.")
    ],
    overrides: Annotated[list[str] | None, typer.Argument(help="Dotted overrides.")] = None,
    prompts: Annotated[
        int, typer.Option(help="Prompts to generate for (each a group of algo.group_size).")
    ] = 256,
) -> None:
    """Rollout tokens/s of the RL loop's actors against vLLM alone on the same work."""
    cfg = _load_bench_config(config, overrides)
    from olmorl.bench.rollout import bench_rollout as run_bench
    from olmorl.bench.table import format_table

    typer.echo(format_table(run_bench(cfg, prompts), unit="tokens"))


@bench_app.command("rl")
def bench_rl(
    config: Annotated[Path, typer.Argument(help="Recipe YAML: model, data, cluster, batch sizes.")],
    overrides: Annotated[list[str] | None, typer.Argument(help="Dotted overrides.")] = None,
    steps: Annotated[
        int, typer.Option(min=1, help="Measured steps per mode (after one warm-up).")
    ] = 5,
    modes: Annotated[
        str, typer.Option(help="Comma-separated: sync, async, async+active, async+inflight.")
    ] = "sync,async,async+active,async+inflight",
    shortest: Annotated[
        int, typer.Option(help="Shortest response (tokens) of the long tail.")
    ] = 16,
    alpha: Annotated[
        float, typer.Option(help="Pareto tail index; smaller is longer-tailed.")
    ] = 1.2,
    async_steps: Annotated[int, typer.Option(help="algo.async_steps of the async modes.")] = 1,
) -> None:
    """End-to-end training tokens/s per scheduling mode, as a ratio to the first mode."""
    cfg = _load_bench_config(config, overrides)
    from olmorl.bench.rl import bench_rl as run_bench
    from olmorl.bench.rl import format_modes

    try:
        results = run_bench(
            cfg, [m.strip() for m in modes.split(",")], steps, shortest, alpha, async_steps
        )
    except ValueError as e:
        raise _fail(str(e)) from None
    typer.echo(format_modes(results))


@bench_app.command("learner")
def bench_learner(
    config: Annotated[Path, typer.Argument(help="Recipe YAML: model, learners, batch sizes.")],
    overrides: Annotated[list[str] | None, typer.Argument(help="Dotted overrides.")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Timed steps per side (after a warm-up).")] = 5,
) -> None:
    """The learners' RL train step against a plain single-process loop on the same rows."""
    cfg = _load_bench_config(config, overrides)
    from olmorl.bench.learner import bench_learner as run_bench
    from olmorl.bench.table import format_table

    typer.echo(format_table(run_bench(cfg, steps), unit="tokens"))


@bench_app.command("weight-sync")
def bench_weight_sync(
    config: Annotated[Path, typer.Argument(help="Recipe YAML: model, engines, learners.")],
    overrides: Annotated[list[str] | None, typer.Argument(help="Dotted overrides.")] = None,
    pushes: Annotated[int, typer.Option(min=1, help="Timed pushes (after one warm-up).")] = 5,
) -> None:
    """Bytes/s of a learner-to-engines weight push against a plain copy of the same bytes."""
    cfg = _load_bench_config(config, overrides)
    from olmorl.bench.table import format_table
    from olmorl.bench.weight_sync import bench_weight_sync as run_bench

    typer.echo(format_table(run_bench(cfg, pushes), unit="bytes"))


@bench_app.command("verifiers")
def bench_verifiers(
    math: Annotated[int, typer.Option(help="Math verifications to time.")] = 500,
    code: Annotated[int, typer.Option(help="Sandboxed code executions to time.")] = 200,
) -> None:
    """Math verifications/s and sandboxed code executions/s, each against a baseline without isolation."""
    from olmorl.bench.table import format_table
    from olmorl.bench.verifiers import bench_code, bench_math

    typer.echo("math verifier\n" + format_table(bench_math(math), unit="verifications"))
    typer.echo("\ncode verifier (sandboxed)\n" + format_table(bench_code(code), unit="executions"))


@bench_app.command("decontamination")
def bench_decontamination(
    train_rows: Annotated[int, typer.Option(min=1, help="Training rows at scale 1.")] = 5000,
    eval_rows: Annotated[int, typer.Option(min=1, help="Evaluation rows at scale 1.")] = 500,
    scales: Annotated[
        str, typer.Option(help="Comma-separated multiples of the base sizes.")
    ] = "1,2,4,8",
) -> None:
    """Time and peak memory of `data decontaminate` as the training rows, then the evaluation
    rows, grow; ratios to the smallest size, so linear growth reads as ratios equal to the scales."""
    from olmorl.bench.decontamination import bench_decontamination as run_bench
    from olmorl.bench.decontamination import format_scaling

    try:
        factors = tuple(int(s) for s in scales.split(","))
    except ValueError:
        factors = ()
    if not factors or min(factors) < 1:
        raise _fail(f"--scales: expected positive integers separated by commas, got {scales!r}")
    typer.echo(format_scaling(run_bench(train_rows, eval_rows, factors)))


@data_app.command("synth")
def data_synth(
    kind: Annotated[
        str,
        typer.Argument(
            help="target-token, arithmetic (RL), arithmetic-text (pretraining), "
            "arithmetic-chat and chat-copy (SFT), arithmetic-preference and preference-copy (DPO)."
        ),
    ],
    out: Annotated[Path, typer.Argument(help="Output JSONL file.")],
    n: Annotated[int, typer.Option(help="Number of rows.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    num_targets: Annotated[
        int, typer.Option(help="target-token, *-copy: distinct target words (≤ 64).")
    ] = 8,
    max_operand: Annotated[int, typer.Option(help="arithmetic*: largest operand.")] = 20,
    fraction_share: Annotated[
        float, typer.Option(help="arithmetic*: share of fraction sums among the expressions.")
    ] = 0.25,
    exclusive: Annotated[
        bool,
        typer.Option(
            "--exclusive", help="target-token: forbid the other target words in the response."
        ),
    ] = False,
    boxed: Annotated[
        bool, typer.Option("--boxed", help="arithmetic-text: ask and answer as the chat sets do.")
    ] = False,
    split: Annotated[
        str,
        typer.Option(
            help="train, or eval: held-out phrasings (target-token), phrasing × word "
            "combinations (*-copy) or expressions (arithmetic)."
        ),
    ] = "train",
) -> None:
    """Write a small synthetic data set: RL, SFT and DPO rows in the Dolci schemas, or text
    documents (`{"text": ...}`) for pretraining."""
    from olmorl.data.synth import build_synthetic_rows, write_jsonl

    if kind == "target-token":
        options = {"num_targets": num_targets, "exclusive": exclusive, "split": split}
    elif kind in ("chat-copy", "preference-copy"):
        options = {"num_targets": num_targets, "split": split}
    else:  # arithmetic, arithmetic-text, arithmetic-chat, arithmetic-preference
        options = {"max_operand": max_operand, "split": split, "fraction_share": fraction_share}
        if kind == "arithmetic-text":
            options["boxed"] = boxed
    try:
        rows = build_synthetic_rows(kind, n, seed=seed, **options)
    except ValueError as e:
        raise _fail(str(e)) from None
    typer.echo(f"wrote {len(rows)} {kind} rows to {write_jsonl(rows, out)}")


@data_app.command("tokenize")
def data_tokenize(
    sources: Annotated[
        list[Path], typer.Argument(help="Text files (.jsonl/.json/.parquet), one document a row.")
    ],
    tokenizer: Annotated[
        str, typer.Option(help="Hugging Face tokenizer directory (e.g. the model's).")
    ],
    out_dir: Annotated[Path, typer.Option(help="Where <source stem>.npy and .json go.")],
    text_field: Annotated[str, typer.Option(help="Field holding the document text.")] = "text",
) -> None:
    """Tokenize text documents into token arrays for `olmorl pretrain`: one flat .npy per source,
    each document followed by EOS, and a .json summary beside it."""
    from olmorl.data.loading import DataError
    from olmorl.data.token_arrays import tokenize_files

    try:
        for source, summary in tokenize_files(sources, tokenizer, out_dir, text_field):
            typer.echo(
                f"{source}: {summary['documents']} documents, {summary['tokens']:,} tokens -> "
                f"{summary['array']}"
            )
    except DataError as e:
        raise _fail(str(e)) from None


@data_app.command("decontaminate")
def data_decontaminate(
    train: Annotated[list[Path], typer.Argument(help="Training files (.jsonl/.json/.parquet).")],
    against: Annotated[
        list[Path], typer.Option("--against", help="Evaluation files; repeat for several.")
    ],
    out_dir: Annotated[Path, typer.Option(help="Where the clean copies and the report go.")],
    ngram: Annotated[int, typer.Option(help="Tokens per n-gram (words and punctuation).")] = 13,
    min_overlap: Annotated[
        float,
        typer.Option(help="Share of an evaluation row's n-grams a training row must hold."),
    ] = 0.8,
) -> None:
    """Remove training rows that share long n-grams with evaluation data: a clean copy of each
    file (<stem>.jsonl) and a report per file in decontamination_report.json."""
    from olmorl.data.decontamination import decontaminate
    from olmorl.data.loading import DataError

    try:
        report = decontaminate(
            [str(p) for p in train], [str(p) for p in against], out_dir, ngram, min_overlap
        )
    except (DataError, ValueError) as e:
        raise _fail(str(e)) from None
    for source, entry in report["files"].items():
        typer.echo(
            f"{source}: {entry['removed']} of {entry['rows']} rows overlap the evaluation data; "
            f"clean copy {entry['clean_copy']}"
        )
    typer.echo(f"report: {out_dir / 'decontamination_report.json'}")


@data_app.command("check")
def data_check(
    sources: Annotated[
        list[str], typer.Argument(help="Files (.jsonl/.json/.parquet) or hub names.")
    ],
    split: Annotated[str, typer.Option(help="Split of hub data sets.")] = "train",
) -> None:
    """Validate RL data sets (schema and verifier names) and count rows per verifier."""
    from collections import Counter

    from olmorl.data.loading import DataError
    from olmorl.data.prompts import load_rl_rows
    from verifiers import available_verifiers

    try:
        rows = load_rl_rows(sources, known_verifiers=available_verifiers(), split=split)
    except DataError as e:
        raise _fail(str(e)) from None
    counts = Counter(name for row in rows for name in row.verifier_names)
    typer.echo(
        f"{len(rows)} rows ok; per verifier: "
        + ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    )


def _default_run_name(config_path: Path) -> str:
    return f"{config_path.stem}-{datetime.datetime.now():%Y%m%d-%H%M%S}"


def main() -> None:
    app()
