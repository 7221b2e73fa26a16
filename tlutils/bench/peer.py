"""The peer: torchvision's ``ssd300_vgg16`` training step on the batch our SSD trains on.

Random weights, Adam, in float32 or under bf16 autocast (float32 weights, bf16 compute: what Keras'
``mixed_bfloat16`` does for ours). Needs ``torch`` and ``torchvision`` (``pip install -e ".[bench]"``);
:func:`peer_missing` says when they are absent. The peer always computes on the CPU.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

#: Schemas of the two torchvision operators whose "fake" kernels ``import torchvision`` registers.
_TORCHVISION_OPS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_torchvision_library: Any = None  # kept alive: dropping a torch.library.Library undoes its definitions


def peer_missing() -> str | None:
    """Why the torchvision peer cannot run here, or ``None`` when torch and torchvision are installed."""
    missing = [name for name in ("torch", "torchvision") if importlib.util.find_spec(name) is None]
    if missing:
        return f"skipped: {' and '.join(missing)} not installed (pip install -e \".[bench]\")"
    return None


def keep_triton_out() -> None:
    """Make ``import triton`` fail (torch then treats Triton as absent) if TensorFlow is loaded and
    Triton is not yet: see :func:`import_torchvision`."""
    if "tensorflow" in sys.modules and "triton" not in sys.modules:
        sys.modules["triton"] = None  # `import triton` raises ImportError from now on


def import_torchvision() -> tuple[Any, str]:
    """``import torchvision``, working around a torchvision wheel whose C++ ops cannot load.

    PyPI's Linux torchvision is built against the CUDA torch; next to the CPU-only torch its ``_C``
    extension (nms, roi_align, ...) does not load and the import then fails registering a kernel for
    ``torchvision::nms``. Training an SSD uses none of those ops (only inference's NMS does), so the two
    schemas are declared and the import retried. Returns the module and a note ("" when not needed).

    In a process that has loaded TensorFlow, Triton (torch's GPU kernel compiler, imported by
    ``torch._dynamo``) is kept out: its bundled LLVM crashed the process next to TensorFlow's (SIGSEGV
    in ``import triton``). A training step on the CPU never uses Triton.
    """
    global _torchvision_library
    keep_triton_out()
    import torch

    try:
        import torchvision

        return torchvision, ""
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
    for name in [name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")]:
        del sys.modules[name]
    _torchvision_library = torch.library.Library("torchvision", "DEF")
    for schema in _TORCHVISION_OPS:
        _torchvision_library.define(schema)
    import torchvision

    return torchvision, "torchvision's C++ ops did not load (CUDA wheel next to CPU torch); training does not use them"


def peer_precision_context(bf16: bool) -> contextlib.AbstractContextManager:
    """The context the peer's forward pass (loss included) runs in: bf16 autocast on the CPU, or none.

    The backward pass runs outside it, as torch's autocast asks.
    """
    if not bf16:
        return contextlib.nullcontext()
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16)


def torchvision_peer(images: np.ndarray, truths: list[tuple[np.ndarray, np.ndarray]], num_classes: int,
                     bf16: bool = False) -> tuple[Callable[[], None], dict[str, Any]]:
    """A training step of torchvision's ``ssd300_vgg16`` on a fixed batch, float32 or (``bf16``) autocast.

    Args:
        images: ``(B, S, S, 3)`` float 0-255, the batch our SSD trains on (torchvision takes 0-1, CHW).
        truths: per image ``(boxes (K, 4) normalized corners, labels (K,) in 1..C)``.
        num_classes: object classes C (torchvision counts the background too: C + 1).
        bf16: run the forward pass and the loss under ``torch.autocast("cpu", dtype=torch.bfloat16)``.

    Returns:
        The step, and ``{"peer_note": versions}``; in float32 also ``"peer_train_gflop_per_image"``, torch's
        FLOP count of a one-image step (the count does not depend on the dtype).
    """
    import torch

    torchvision, note = import_torchvision()
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision.models.detection import ssd300_vgg16

    torch.manual_seed(0)
    model = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=num_classes + 1)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    size = images.shape[1]
    tensors = [torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1) / 255, dtype=np.float32))
               for image in images]  # (3, S, S) 0-1
    targets = [{"boxes": torch.from_numpy(boxes * size), "labels": torch.from_numpy(labels.astype(np.int64))}
               for boxes, labels in truths]  # pixel corners

    def step(count: int = len(tensors)) -> None:
        with peer_precision_context(bf16):
            losses = model(tensors[:count], targets[:count])  # transform, matching and loss included
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()

    versions = f"torch {torch.__version__}, torchvision {torchvision.__version__}, {torch.get_num_threads()} threads"
    results: dict[str, Any] = {"peer_note": versions + (f"; {note}" if note else "")}
    if not bf16:
        with FlopCounterMode(display=False) as counter:
            step(1)  # forward + backward of one image, 2 FLOPs per multiply-add
        results["peer_train_gflop_per_image"] = counter.get_total_flops() / 1e9
    return step, results
