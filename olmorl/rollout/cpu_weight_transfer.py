"""A vLLM weight-transfer engine for machines without GPUs: weights arrive as safetensors files.

vLLM 0.32's own engines (nccl, ipc, ...) are CUDA-only. This one is registered as `olmorl_file`
in vLLM's WeightTransferEngineFactory; vLLM imports this module inside its worker process because
`RolloutEngine` names `WeightTransferExtension` as the worker extension (registration must happen
in the process that builds the engine). Files are best put in /dev/shm: memory-speed, no disk.
"""

from dataclasses import dataclass

from safetensors.torch import load_file
from vllm.distributed.weight_transfer.base import (
    WeightTransferEngine,
    WeightTransferInitInfo,
    WeightTransferUpdateInfo,
)
from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory
from vllm.model_executor.model_loader.reload import (
    finalize_layerwise_reload,
    initialize_layerwise_reload,
)

BACKEND_NAME = "olmorl_file"


@dataclass
class FileInitInfo(WeightTransferInitInfo):
    pass


@dataclass
class FileUpdateInfo(WeightTransferUpdateInfo):
    path: str = ""
    """A safetensors file of full tensors under Hugging Face names, readable by the worker."""


class FileWeightTransferEngine(WeightTransferEngine[FileInitInfo, FileUpdateInfo]):
    init_info_cls = FileInitInfo
    update_info_cls = FileUpdateInfo

    def init_transfer_engine(self, init_info: FileInitInfo) -> None:
        pass  # nothing to connect: each update names its file

    def start_weight_update(self) -> None:
        # Layer-wise reload: the CPU kernels repack linear weights after loading, so plain
        # load_weights into a running model fails; vLLM's reload re-runs that processing.
        initialize_layerwise_reload(self.model)

    def update_weights(self, update_info: dict) -> None:
        # The base class ends with torch.accelerator.synchronize(), which raises without one.
        self.receive_weights(self.parse_update_info(update_info))

    def receive_weights(self, update_info: FileUpdateInfo) -> None:
        self.model.load_weights(list(load_file(update_info.path).items()))

    def finish_weight_update(self) -> None:
        finalize_layerwise_reload(self.model, self.model_config)

    def shutdown(self) -> None:
        pass


if BACKEND_NAME not in WeightTransferEngineFactory._registry:
    WeightTransferEngineFactory.register_engine(BACKEND_NAME, FileWeightTransferEngine)


class WeightTransferExtension:
    """vLLM worker extension; naming it makes vLLM import this module in the worker process."""
