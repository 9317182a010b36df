r"""FLM: a flow language model = interpolant + time schedule + network denoiser (+ sampler).

Training (DESIGN §1): per sequence draw model time :math:`\tau\sim U[0,1]` (stratified over the
batch), set :math:`t = t(\tau)`, build the noisy state in the model's state space with
``flow.noisy(tokens, tau=τ, space=space)``

.. math::
    x_t = \alpha(t)\,x_0 + \beta(t)\,x_1 \quad(\text{projected: } h_t = \alpha(t)\,x_0E + \beta(t)\,E[\text{tokens}]),

and (``loss="ce"``, the default) minimize the token-level cross-entropy of ``net(h_t, τ)`` (the drawn τ, no round trip) against the clean tokens
(:func:`flowlm.denoisers.flm_loss`, no time weighting; computed by the chunked
:func:`flowlm.nets.linear_softcap_cross_entropy`, which never forms the ``[B, L, V]`` logits). With ``projected=True`` (default) the
noise is drawn directly as :math:`x_0E\sim\mathcal N(0,E^\top E)` (:class:`~flowlm.nets.ProjectedSpace`).

The paper's loss ablation (its Table: CE 97 vs MSE 120 vs velocity-MSE 3801 Gen PPL on LM1B) as ``loss``:

* ``"mse"`` — the same softmax denoiser, trained by :math:`\lVert \mathrm{softmax}(\ell) - e_{x_1}\rVert^2`
  (summed over V, averaged over tokens); it samples exactly like the CE model.
* ``"velocity_mse"`` — the network's V outputs :math:`u` are a velocity in the one-hot space, trained by
  :math:`\tfrac1V\lVert u - (\dot\alpha x_0 + \dot\beta x_1)\rVert^2` with V-wide noise :math:`x_0`
  (projected to :math:`h_t = x_tE`). Its denoiser (:class:`~flowlm.nets.VelocityNetDenoiser`) is the
  implied clean estimate :math:`\hat x_1 = (u - \tfrac{\dot\alpha}{\alpha}x_t)/(\dot\beta - \tfrac{\dot\alpha\beta}{\alpha})`,
  so the probability-flow drift built from it is :math:`u`: every FLM sampler runs unchanged. It is not a
  probability (no logits; not distillable into an FMLM).
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from flowlm.flow import Flow
from flowlm.interpolants import stratified_uniform
from flowlm.models.base import FlowModel
from flowlm.nets import DiTConfig, NetDenoiser, VelocityNetDenoiser, linear_softcap_cross_entropy
from flowlm.prompt import Prompt, random_clean_mask

__all__ = ["FLM", "FLM_LOSSES"]

FLM_LOSSES = ("ce", "mse", "velocity_mse")


class FLM(FlowModel):
    """A flow language model.

    Attributes: ``net`` (:class:`~flowlm.nets.DiT`), ``flow`` (interpolant + t ↔ τ schedule),
    ``space`` (where the flow's state lives), ``denoiser`` (``den(x, t) -> logits``),
    ``vocab_size``, ``config``, ``kind = "flm"``.
    """

    kind = "flm"

    def __init__(self, config: DiTConfig, flow: Flow | None = None, projected: bool = True, loss: str = "ce") -> None:
        if config.two_time:
            raise ValueError("FLM needs a single-time DiT (two_time=False); two-time nets belong to FMLM")
        if loss not in FLM_LOSSES:
            raise ValueError(f"unknown FLM loss {loss!r}; choose one of {', '.join(FLM_LOSSES)}")
        super().__init__(config, flow, projected)
        self.loss_kind = loss
        # a view of self.net, not a second registered submodule (state_dict keys stay net.*)
        wrapper = VelocityNetDenoiser if loss == "velocity_mse" else NetDenoiser
        object.__setattr__(self, "denoiser", wrapper(self.net, self.flow, self.space))

    def loss(
        self,
        tokens: Int[Tensor, "B L"],
        mask: Bool[Tensor, "B L"] | None = None,
        generator: torch.Generator | None = None,
        condition_fraction: float = 0.0,
    ) -> tuple[Tensor, dict[str, Any]]:
        """FLM loss on a batch of clean token sequences; returns ``(loss, metrics)``.

        ``condition_fraction`` > 0 trains for prompts: that share of the sequences holds a random
        prefix, suffix or outside-of-a-span clean (:func:`flowlm.prompt.random_clean_mask`), with
        per-token τ = 1 (t = 1, state = the clean one-hot / E[token]) there, and those positions
        are left out of the loss. 0 (default) is the plain FLM loss."""
        B = tokens.shape[0]
        dev = tokens.device
        tau = stratified_uniform(B, device=dev, generator=generator)  # [B], model time
        metrics: dict[str, Any] = {}
        if self.loss_kind != "ce":
            if condition_fraction:
                raise ValueError(f"prompt training (condition_fraction) supports the CE loss, not {self.loss_kind!r}")
            loss = (self._velocity_loss if self.loss_kind == "velocity_mse" else self._mse_loss)(tokens, tau, mask, generator)
            return loss, {"loss": loss.detach()}
        if condition_fraction:
            clean = random_clean_mask(B, tokens.shape[1], condition_fraction, device=dev, generator=generator)
            tau = torch.where(clean, torch.ones_like(tau)[:, None], tau[:, None])  # [B, L]: τ = 1 where clean
            path = self.flow.noisy(tokens, tau=tau, space=self.space, generator=generator, dtype=self.net.E.dtype)
            prompt = Prompt(tokens, clean)
            xt = prompt.hold(path.xt, prompt.clean_state(self.space, path.xt.dtype))
            mask = ~clean if mask is None else (mask & ~clean)
            metrics["clean_fraction"] = clean.float().mean()
        else:
            xt = self.flow.noisy(tokens, tau=tau, space=self.space, generator=generator, dtype=self.net.E.dtype).xt
        features = self.net(self.denoiser.project(xt), tau, return_features=True)  # [B, L, d], τ as drawn
        # = flm_loss(net(h, τ), tokens, mask), without materializing [B, L, V] logits
        loss = linear_softcap_cross_entropy(
            features, self.net.head.weight, self.net.head.bias, tokens, mask, cap=self.config.out_softcap
        )
        metrics["loss"] = loss.detach()
        return loss, metrics

    def _mse_loss(self, tokens: Tensor, tau: Tensor, mask: Tensor | None, generator: torch.Generator | None) -> Tensor:
        """Denoiser + MSE: mean over (unmasked) tokens of ‖softmax(logits) − one_hot‖² (summed over V)."""
        xt = self.flow.noisy(tokens, tau=tau, space=self.space, generator=generator, dtype=self.net.E.dtype).xt
        probs = torch.softmax(self.net(self.denoiser.project(xt), tau).float(), dim=-1)  # [B, L, V]
        err = probs.square().sum(-1) - 2.0 * probs.gather(-1, tokens[..., None]).squeeze(-1) + 1.0  # [B, L]
        return _masked_mean(err, mask)

    def _velocity_loss(self, tokens: Tensor, tau: Tensor, mask: Tensor | None, generator: torch.Generator | None) -> Tensor:
        """Velocity + MSE: (1/V)‖u − (α̇ x0 + β̇ x1)‖² per token, V-wide noise x0, the state projected by E."""
        B, L = tokens.shape
        V = self.vocab_size
        E = self.net.E
        x0 = torch.randn(B, L, V, device=tokens.device, dtype=E.dtype, generator=generator)  # [B, L, V]
        x1 = torch.nn.functional.one_hot(tokens, V).to(E.dtype)  # [B, L, V]
        t = self.flow.t_of_tau(tau)[:, None, None].to(E.dtype)  # [B, 1, 1]
        path = self.flow.interpolant
        xt = path.alpha(t) * x0 + path.beta(t) * x1  # [B, L, V]
        h = xt @ E if self.projected else xt  # [B, L, d] or [B, L, V]
        u = self.net(self.denoiser.project(h), tau)  # [B, L, V]
        target = path.alpha_dot(t) * x0 + path.beta_dot(t) * x1
        return _masked_mean((u.float() - target.float()).square().mean(-1), mask)

    def forward(self, tokens: Int[Tensor, "B L"], mask: Bool[Tensor, "B L"] | None = None) -> Tensor:
        """The scalar FLM loss (so ``FLM`` can be wrapped by data-parallel / compile tools)."""
        return self.loss(tokens, mask)[0]

    @property
    def model_fn(self) -> NetDenoiser:
        return self.denoiser

    def default_sampler(self, n_steps: int, gamma: float) -> Any:
        """Euler on the τ grid (:class:`flowlm.samplers.EulerSampler`); γ is a flow-map option."""
        if gamma:
            raise ValueError(f"gamma (re-noising) applies to flow-map sampling (FMLM); an FLM samples with gamma=0, got {gamma}")
        from flowlm.samplers import EulerSampler

        return EulerSampler(n_steps)


def _masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``x`` [B, L] over the positions where ``mask`` is True (all when None)."""
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp(min=1.0)
