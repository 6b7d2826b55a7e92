"""`OLMORL_TARGET=gpu bash scripts/install.sh`: fails when the venv's torch is built without CUDA.

pip may have taken a CPU torch wheel (a local index, or a resolver that preferred one); vLLM and
the learners would then fail much later, or quietly run on the CPU. A CUDA build that sees no GPU
only warns: a node without GPUs may build the venv for others.
"""

import sys

import torch

if torch.version.cuda is None:
    sys.exit(
        f"install failed: OLMORL_TARGET=gpu but torch {torch.__version__} in this venv is built "
        "without CUDA (torch.version.cuda is None). Install a CUDA build of the same version "
        f"(pip install --force-reinstall torch=={torch.__version__.split('+')[0]} --index-url "
        "https://download.pytorch.org/whl/<cuda tag, e.g. cu128>) and run this script again."
    )
if not torch.cuda.is_available():
    print(
        f"warning: torch {torch.__version__} has CUDA {torch.version.cuda} but sees no GPU here "
        "(fine on a node without GPUs that only builds the venv)",
        file=sys.stderr,
    )
