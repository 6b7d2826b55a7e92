#!/usr/bin/env bash
# Starts this node's Ray from the repository's virtual environment, so job drivers and actors find
# `python -m olmorl`:
#   launch/ray_node.sh head                  # the head: GCS on port 6379, dashboard/jobs on 8265
#   launch/ray_node.sh worker HEAD_IP        # every other node
# Extra arguments go to `ray start` (e.g. --block under SLURM, --resources='{"...": 1}').
# RAY_PORT and RAY_DASHBOARD_PORT change the ports; RAY_DASHBOARD_HOST (default 0.0.0.0, so job
# clients on other machines reach it) the dashboard's interface.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=/dev/null
source "$repo/.venv/bin/activate"
role=${1:?usage: ray_node.sh head|worker [HEAD_IP] [ray start options]}
shift
port=${RAY_PORT:-6379}
case "$role" in
  head)
    exec ray start --head --port="$port" --dashboard-host="${RAY_DASHBOARD_HOST:-0.0.0.0}" \
      --dashboard-port="${RAY_DASHBOARD_PORT:-8265}" --disable-usage-stats "$@"
    ;;
  worker)
    head_ip=${1:?usage: ray_node.sh worker HEAD_IP [ray start options]}
    shift
    exec ray start --address="$head_ip:$port" --disable-usage-stats "$@"
    ;;
  *)
    echo "ray_node.sh: role must be head or worker, got '$role'" >&2
    exit 2
    ;;
esac
