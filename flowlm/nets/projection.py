r"""The projected state space :math:`h = xE`.

A :class:`~flowlm.nets.DiT` reads a state only through :math:`h = xE` (``E: [V, d]``). Every
update of the samplers and distillers is affine in the state and the denoiser output, so it
commutes with the projection, and the flow can be carried in :math:`\mathbb R^{L\times d}`
instead of :math:`\mathbb R^{L\times V}`:

* ``one_hot(tokens)`` = :math:`x_1E` = ``E[tokens]``,
* ``embed(probs)``    = ``probs @ E``,
* ``noise(B, L)``     ~ :math:`x_0E \sim \mathcal N(0, E^\top E)` per token:
  for :math:`V > d`, :math:`z\,\Lambda^\top` with :math:`z\sim\mathcal N(0,I_d)` and
  :math:`\Lambda\Lambda^\top = E^\top E + \epsilon I` (Cholesky, relative jitter ``ε``);
  for :math:`V \le d`, the exact product :math:`z E` with :math:`z\sim\mathcal N(0,I_V)`.

The noise is differentiable in ``E`` (through the Cholesky factor), and its law equals that of
:math:`x_0E` for every ``E``, so the expected loss as a function of ``E`` and hence the gradient
estimate are unchanged by the shortcut. The ``B×L×V`` noise tensor is never formed.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from flowlm._checks import check_token_ids

__all__ = ["ProjectedSpace"]


class ProjectedSpace:
    """A :class:`flowlm.states.StateSpace` whose states are ``h = x @ E`` for the network's ``E``.

    Holds a reference to the network, so it always uses the current (trained) ``E``.
    """

    def __init__(self, net: nn.Module, jitter: float = 1e-6) -> None:
        if not hasattr(net, "E"):
            raise TypeError(f"ProjectedSpace needs a network with an input matrix `E` [V, d]; got {type(net).__name__}")
        self.net = net
        self.jitter = float(jitter)

    @property
    def E(self) -> Tensor:
        return self.net.E

    @property
    def vocab_size(self) -> int:
        return int(self.net.E.shape[0])

    @property
    def dim(self) -> int:
        """Width ``d`` of a projected state."""
        return int(self.net.E.shape[1])

    def one_hot(self, tokens: Int[Tensor, "B L"], dtype: torch.dtype | None = None) -> Float[Tensor, "B L D"]:
        """x1 @ E = E[tokens]."""
        check_token_ids("tokens", tokens, self.vocab_size)
        h = self.E[tokens]  # [B, L, d]
        return h if dtype is None else h.to(dtype)

    def embed(self, probs: Float[Tensor, "B L V"]) -> Float[Tensor, "B L D"]:
        """probs @ E: a point of the simplex (per token) mapped to the projected space."""
        if not torch.compiler.is_compiling() and probs.shape[-1] != self.vocab_size:
            raise ValueError(f"embed expects [B, L, {self.vocab_size}] probabilities, got {tuple(probs.shape)}")
        return probs.to(self.E.dtype) @ self.E

    def noise_factor(self) -> Float[Tensor, "K D"]:
        """A matrix ``F`` with ``FᵀF = EᵀE`` (+ jitter): ``Λᵀ`` (``[d, d]``) when V > d, else ``E`` itself."""
        E = self.E
        V, d = E.shape
        if V <= d:
            return E
        with torch.autocast(device_type=E.device.type, enabled=False):  # the Gram matrix needs full precision
            return self._cholesky_factor(E)

    def _cholesky_factor(self, E: Tensor) -> Tensor:
        d = E.shape[1]
        gram = E.float().T @ E.float()  # [d, d]
        eps = self.jitter * gram.diagonal().mean().detach()
        eye = torch.eye(d, device=E.device, dtype=gram.dtype)
        for _ in range(6):
            chol, info = torch.linalg.cholesky_ex(gram + eps * eye)
            if int(info) == 0:
                return chol.T.to(E.dtype)
            eps = eps * 100.0
        raise RuntimeError("ProjectedSpace: E^T E is not positive definite even with jitter; is E degenerate (NaN/zero)?")

    def noise(
        self, batch: int, length: int, *, device: torch.device | str | None = None,
        dtype: torch.dtype | None = None, generator: torch.Generator | None = None,
    ) -> Float[Tensor, "B L D"]:
        """A draw of x0 @ E ~ N(0, EᵀE) per token, ``[batch, length, d]``."""
        factor = self.noise_factor()  # [K, d], K = d (Cholesky) or V (direct)
        dev = factor.device if device is None else torch.device(device)
        z = torch.randn(batch, length, factor.shape[0], device=dev, dtype=factor.dtype, generator=generator)
        h = z @ factor.to(dev)  # [B, L, d]
        return h if dtype is None else h.to(dtype)

    def __repr__(self) -> str:
        return f"ProjectedSpace(vocab_size={self.vocab_size}, dim={self.dim})"
