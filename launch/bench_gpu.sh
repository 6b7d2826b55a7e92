#!/usr/bin/env bash
# Throughput benchmarks on a GPU node (2+ GPUs), with nothing downloaded:
#   launch/bench_gpu.sh [KEY=VALUE ...]     (overrides for recipes/gpu/bench_rl_0.6b.yaml)
# Builds a ~0.6B Olmo3 with random weights in models/bench-0.6b, then prints the tables of
# `olmorl bench rl` (sync vs async modes, long-tailed lengths) and `olmorl bench weight-sync`
# (file and NCCL-broadcast pushes against a device copy).
set -euo pipefail
cd "$(dirname "$0")/.."
recipe=recipes/gpu/bench_rl_0.6b.yaml
python -m pytest -q -m gpu tests   # the NCCL weight broadcast between two GPUs, first
[ -d models/bench-0.6b ] || python -m olmorl tiny-model models/bench-0.6b --preset bench-0.6b
python -m olmorl bench rl "$recipe" "$@" --steps 10 --shortest 64 --alpha 1.2
python -m olmorl bench rl "$recipe" "$@" --steps 10 --shortest 64 --alpha 1.2 --async-steps 4 \
  --modes sync,async+inflight
python -m olmorl bench weight-sync "$recipe" "$@"
