"""Contrastive objectives and their parts: SimCLR's NT-Xent and projection head, MoCo v2's momentum encoder,
key queue and InfoNCE loss."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import TicketlabError


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise TicketlabError(f"the temperature must be positive, got {temperature}")


def _check_pair(a: Tensor, b: Tensor, names: str) -> None:
    if a.dim() != 2 or a.shape != b.shape:
        raise TicketlabError(
            f"{names} must be two [N, dim] batches of one shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """SimCLR's loss over the 2N views: cosine similarities over `temperature`, each view's positive the other view of
    its image, the other 2N - 2 views its negatives, itself excluded; the mean over the 2N anchors."""
    _check_pair(z1, z2, "the two views' embeddings")
    _check_temperature(temperature)
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    positives = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
    return F.cross_entropy(logits, positives)


class ProjectionHead(nn.Sequential):
    """SimCLR's MLP head: Linear, (BatchNorm,) ReLU, Linear."""

    def __init__(self, in_features: int, hidden: int, out: int, batch_norm: bool = False):
        norm = [nn.BatchNorm1d(hidden)] if batch_norm else []
        first = nn.Linear(in_features, hidden, bias=not batch_norm)
        super().__init__(first, *norm, nn.ReLU(inplace=True), nn.Linear(hidden, out))


@torch.no_grad()
def momentum_update(online: nn.Module, momentum_encoder: nn.Module, m: float) -> None:
    """MoCo's key-encoder update in place: θk ← m θk + (1 − m) θq; buffers (BatchNorm statistics) copied.

    The momentum encoder holds the online encoder's state under the same names, as parameters or as buffers
    (see `frozen_copy`)."""
    if not 0 <= m <= 1:
        raise TicketlabError(f"the momentum must lie in [0, 1], got {m}")
    parameters, buffers = dict(online.named_parameters()), dict(online.named_buffers())
    target = momentum_encoder.state_dict(keep_vars=True)
    if target.keys() != parameters.keys() | buffers.keys() or any(
        target[name].shape != value.shape for name, value in (parameters | buffers).items()
    ):
        raise TicketlabError("the momentum encoder's state does not match the online encoder's")
    for name, value in parameters.items():
        target[name].mul_(m).add_(value, alpha=1 - m)
    for name, value in buffers.items():
        target[name].copy_(value)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A copy of `module` whose parameters are buffers: state that checkpoints keep but no optimizer trains and no
    loading makes trainable again (MoCo's momentum encoder, which `momentum_update` moves)."""
    frozen = copy.deepcopy(module)
    for child in frozen.modules():
        for name, parameter in list(child.named_parameters(recurse=False)):
            delattr(child, name)
            child.register_buffer(name, parameter.detach().clone())
    return frozen


class Queue(nn.Module):
    """MoCo's dictionary: `size` normalized negative keys of `dim` features, replaced first in, first out.

    The keys and the write pointer are buffers, so a checkpoint's state_dict keeps them. Unlike MoCo's code, the size
    need not be a multiple of the batch: a batch that runs past the end wraps around to the start.
    """

    keys: Tensor
    pointer: Tensor

    def __init__(self, size: int, dim: int, generator: torch.Generator | None = None):
        super().__init__()
        if size < 1 or dim < 1:
            raise TicketlabError(f"a queue needs a positive size and dim, got {size} x {dim}")
        self.register_buffer("keys", F.normalize(torch.randn(size, dim, generator=generator), dim=1))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.keys.shape[0]

    @property
    def dim(self) -> int:
        return self.keys.shape[1]

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write a batch of keys [B, dim], normalized and detached, over the oldest ones."""
        if keys.dim() != 2 or keys.shape[1] != self.dim:
            raise TicketlabError(f"keys must be [B, {self.dim}], got {tuple(keys.shape)}")
        if keys.shape[0] > self.size:
            raise TicketlabError(f"a batch of {keys.shape[0]} keys does not fit a queue of {self.size}")
        rows = (self.pointer + torch.arange(keys.shape[0], device=self.keys.device)) % self.size
        self.keys[rows] = F.normalize(keys.detach().to(self.keys), dim=1)
        self.pointer.copy_((self.pointer + keys.shape[0]) % self.size)


def info_nce(q: Tensor, k: Tensor, queue: Tensor | Queue, temperature: float) -> Tensor:
    """MoCo's loss: for each query, logits [q·k, q·queue...] / temperature and cross entropy with the positive at 0.

    Queries, keys and queue are compared by cosine similarity; keys and queue carry no gradient (they come from the
    momentum encoder).
    """
    _check_pair(q, k, "queries and keys")
    _check_temperature(temperature)
    negatives = queue.keys if isinstance(queue, Queue) else queue
    if negatives.dim() != 2 or negatives.shape[1] != q.shape[1]:
        raise TicketlabError(f"the queue must be [K, {q.shape[1]}], got {tuple(negatives.shape)}")
    q = F.normalize(q, dim=1)
    k = F.normalize(k.detach(), dim=1)
    negatives = F.normalize(negatives.detach(), dim=1)
    logits = torch.cat([(q * k).sum(dim=1, keepdim=True), q @ negatives.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))
