"""Weight buckets on the wire: many named tensors packed into one flat byte buffer and back.

A broadcast moves one buffer per bucket, so the number of collectives is the number of buckets,
not of tensors. The layout (names, dtypes, shapes) travels separately, as a small RPC argument;
the receiver allocates the buffer from it before the bytes arrive.
"""

from dataclasses import asdict, dataclass
from functools import cached_property

import torch
from torch import Tensor


@dataclass(frozen=True)
class BucketLayout:
    """What one packed buffer holds, in order; JSON-safe so it rides vLLM's update_info."""

    names: list[str]
    """Hugging Face parameter names."""
    dtypes: list[str]
    """torch dtype names ("bfloat16"), one per tensor."""
    shapes: list[list[int]]
    """Full tensor shapes, one per tensor."""

    @cached_property
    def sizes(self) -> list[int]:
        """Bytes of each tensor."""
        return [
            torch.Size(shape).numel() * getattr(torch, dtype).itemsize
            for shape, dtype in zip(self.shapes, self.dtypes, strict=True)
        ]

    @cached_property
    def offsets(self) -> list[int]:
        """Where each tensor starts in the buffer: aligned, so that a view of its bytes as its
        dtype is legal (and vector loads stay aligned)."""
        offsets, end = [], 0
        for size in self.sizes:
            offsets.append(end)
            end = _aligned(end + size)
        return offsets

    @cached_property
    def num_bytes(self) -> int:
        return _aligned(self.offsets[-1] + self.sizes[-1]) if self.names else 0

    def as_dict(self) -> dict:
        return asdict(self)


def pack_bucket(
    tensors: dict[str, Tensor], device: torch.device | str = "cpu"
) -> tuple[Tensor, BucketLayout]:
    """One contiguous uint8 buffer on `device` holding every tensor's bytes, and its layout."""
    layout = BucketLayout(
        names=list(tensors),
        dtypes=[str(t.dtype).removeprefix("torch.") for t in tensors.values()],
        shapes=[list(t.shape) for t in tensors.values()],
    )
    buffer = torch.empty(layout.num_bytes, dtype=torch.uint8, device=device)
    for tensor, offset, size in zip(tensors.values(), layout.offsets, layout.sizes):
        buffer[offset : offset + size].view(tensor.dtype).view(tensor.shape).copy_(tensor)
    return buffer, layout


def unpack_bucket(buffer: Tensor, layout: BucketLayout) -> list[tuple[str, Tensor]]:
    """(name, tensor) per entry of `layout`; the tensors are views of `buffer`."""
    if buffer.numel() != layout.num_bytes:
        raise ValueError(
            f"weight bucket holds {buffer.numel()} bytes but its layout describes "
            f"{layout.num_bytes} ({len(layout.names)} tensors, first {layout.names[:1]})"
        )
    return [
        (name, buffer[offset : offset + size].view(getattr(torch, dtype)).view(shape))
        for name, dtype, shape, offset, size in zip(
            layout.names, layout.dtypes, layout.shapes, layout.offsets, layout.sizes, strict=True
        )
    ]


_ALIGNMENT = 64  # bytes: the widest element and a cache line


def _aligned(n: int) -> int:
    return -(-n // _ALIGNMENT) * _ALIGNMENT
