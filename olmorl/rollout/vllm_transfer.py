"""The weight-transfer engine inside each vLLM worker: receives buckets of full tensors.

Registered as `olmorl` in vLLM's WeightTransferEngineFactory. vLLM imports this module inside its
worker process because `RolloutEngine` names `WeightTransferExtension` as the worker extension
(registration must happen in the process that builds the engine). A bucket arrives one of two
ways, chosen per push by `rollout.weight_transfer`:
- broadcast: the bytes come through a process group with learner rank 0 (gloo on CPU, NCCL on
  GPU) that `init_transfer_engine` joined; the update info is the bucket's layout;
- file: a safetensors file (best in /dev/shm), for engines no group can reach.
"""

from dataclasses import dataclass, field

import torch
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

from olmorl.rollout.buckets import BucketLayout, unpack_bucket
from olmorl.rollout.transfer_group import (
    TransferGroupInfo,
    abort_group,
    backend_for,
    broadcast_from_root,
    close_group,
    new_group,
)

BACKEND_NAME = "olmorl"


@dataclass
class GroupInitInfo(WeightTransferInitInfo):
    group: dict = field(default_factory=dict)
    """A `TransferGroupInfo` as a dict; empty: join no group (file transfers only)."""


@dataclass
class BucketUpdateInfo(WeightTransferUpdateInfo):
    path: str = ""
    """A safetensors file of full tensors under Hugging Face names; empty: a broadcast bucket."""
    layout: dict = field(default_factory=dict)
    """A broadcast bucket's `BucketLayout` as a dict."""
    group: str = ""
    """The name of the group a broadcast bucket comes through."""


class OlmorlWeightTransferEngine(WeightTransferEngine[GroupInitInfo, BucketUpdateInfo]):
    init_info_cls = GroupInitInfo
    update_info_cls = BucketUpdateInfo

    group = None
    group_name = ""

    def init_transfer_engine(self, init_info: GroupInitInfo) -> None:
        close_group(self.group)  # a new group replaces the old one
        self.group, self.group_name = None, ""
        if not init_info.group:
            return
        info = TransferGroupInfo(**init_info.group)
        if info.backend != backend_for(self.device):
            raise RuntimeError(
                f"weight group {info.name!r} uses {info.backend} (the learner's device), but "
                f"this engine's weights are on {self.device} ({backend_for(self.device)})"
            )
        rank = info.rank_offset + self.parallel_config.rank
        self.group = new_group(
            info.join_rendezvous(), info.name, rank, info.world_size, self.device, info.timeout_s
        )
        self.group_name = info.name

    def start_weight_update(self) -> None:
        # Layer-wise reload: the CPU kernels repack linear weights after loading, so plain
        # load_weights into a running model fails; vLLM's reload re-runs that processing.
        initialize_layerwise_reload(self.model)

    def update_weights(self, update_info: dict) -> None:
        # The base class ends with torch.accelerator.synchronize(), which raises without one;
        # a broadcast has already synchronised its stream.
        self.receive_weights(self.parse_update_info(update_info))

    def receive_weights(self, update_info: BucketUpdateInfo) -> None:
        if update_info.path:
            self.model.load_weights(list(load_file(update_info.path).items()))
            return
        if update_info.group != self.group_name:
            # Waiting in a group the sender is not in would hang until the timeout.
            raise RuntimeError(
                f"weight bucket sent through group {update_info.group!r}, but this engine is in "
                f"{self.group_name or 'no group'!r}"
            )
        layout = BucketLayout(**update_info.layout)
        buffer = torch.empty(layout.num_bytes, dtype=torch.uint8, device=self.device)
        try:
            broadcast_from_root(self.group, buffer)
        except Exception:
            # The group is broken (the root aborted it, or a peer is gone): abort it, so that
            # joining the next group does not wait on it in `close_group`.
            abort_group(self.group)
            self.group, self.group_name = None, ""
            raise
        self.model.load_weights(unpack_bucket(buffer, layout))

    def finish_weight_update(self) -> None:
        finalize_layerwise_reload(self.model, self.model_config)

    def shutdown(self) -> None:
        close_group(self.group)
        self.group, self.group_name = None, ""


if BACKEND_NAME not in WeightTransferEngineFactory._registry:
    WeightTransferEngineFactory.register_engine(BACKEND_NAME, OlmorlWeightTransferEngine)


class WeightTransferExtension:
    """vLLM worker extension; naming it makes vLLM import this module in the worker process."""
