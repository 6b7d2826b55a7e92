#!/usr/bin/env bash
# Submits an olmorl job to a running Ray cluster:
#   RAY_ADDRESS=http://HEAD:8265 launch/submit.sh [--no-wait] rl recipes/tiny/rl_math.yaml [KEY=VALUE ...]
# The repository is the job's working directory (recipes and shipped data resolve against it);
# outputs go to OLMORL_OUTPUT_DIR, which must be storage every node and you can reach.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${RAY_ADDRESS:?set RAY_ADDRESS to the dashboard of the cluster, e.g. http://127.0.0.1:8265}"
output_dir=${OLMORL_OUTPUT_DIR:-$PWD/runs}
# --no-wait first: submit and return at once (the job id is printed; follow it with
# `ray job logs --follow JOB_ID`).
wait=()
if [[ ${1:-} == --no-wait ]]; then
  wait=(--no-wait)
  shift
fi
command=$1
shift
# Keep the upload small: the virtual environment, local models and old runs stay behind.
exec ray job submit --address "$RAY_ADDRESS" --working-dir . ${wait[@]+"${wait[@]}"} \
  --runtime-env-json '{"excludes": [".venv", "models", "runs", ".git", "wandb"]}' \
  -- python -m olmorl "$command" "$@" "run.output_dir=$output_dir"
