"""Training objectives: ``objective(model, tokens) -> (loss, metrics)``."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from jaxtyping import Int
from torch import Tensor, nn

__all__ = ["Objective", "FLMObjective", "DistillationObjective", "TokenNetObjective"]


@runtime_checkable
class Objective(Protocol):
    def __call__(self, model: nn.Module, tokens: Int[Tensor, "B L"]) -> tuple[Tensor, dict[str, Any]]: ...


class FLMObjective:
    """The FLM loss of :meth:`flowlm.models.FLM.loss` (CE against clean tokens at τ ~ U[0,1]).

    ``condition_fraction``: share of sequences trained with random clean positions (prompts;
    t = τ = 1 there, excluded from the loss); 0 = off."""

    def __init__(self, condition_fraction: float = 0.0) -> None:
        if not 0.0 <= condition_fraction <= 1.0:
            raise ValueError(f"condition_fraction must lie in [0, 1], got {condition_fraction}")
        self.condition_fraction = float(condition_fraction)

    def __call__(self, model: nn.Module, tokens: Int[Tensor, "B L"]) -> tuple[Tensor, dict[str, Any]]:
        if self.condition_fraction:
            return model.loss(tokens, condition_fraction=self.condition_fraction)
        return model.loss(tokens)

    def __repr__(self) -> str:
        return "FLMObjective()" if not self.condition_fraction else f"FLMObjective(condition_fraction={self.condition_fraction})"


class DistillationObjective:
    """Flow-map distillation: ``distiller.loss(model.delta, tokens, space=model.space)``.

    ``model`` is an :class:`flowlm.models.FMLM` (the student); the distiller holds the frozen teacher.
    ``condition_fraction``: as for :class:`FLMObjective` (clean positions held, left out of the loss).
    """

    def __init__(self, distiller: Any, condition_fraction: float = 0.0) -> None:
        if not 0.0 <= condition_fraction <= 1.0:
            raise ValueError(f"condition_fraction must lie in [0, 1], got {condition_fraction}")
        self.distiller = distiller
        self.condition_fraction = float(condition_fraction)

    def __call__(self, model: nn.Module, tokens: Int[Tensor, "B L"]) -> tuple[Tensor, dict[str, Any]]:
        if self.condition_fraction:
            return self.distiller.loss(model.delta, tokens, space=model.space, condition_fraction=self.condition_fraction)
        return self.distiller.loss(model.delta, tokens, space=model.space)

    def __repr__(self) -> str:
        return f"DistillationObjective({self.distiller!r})"


class TokenNetObjective:
    """The loss of a same-backbone baseline (:class:`flowlm.models.AR`, :class:`flowlm.models.MDLM`):
    ``model.loss_and_metrics(tokens)`` (next-token CE; MDLM's 1/t-weighted masked CE)."""

    def __call__(self, model: nn.Module, tokens: Int[Tensor, "B L"]) -> tuple[Tensor, dict[str, Any]]:
        return model.loss_and_metrics(tokens)

    def __repr__(self) -> str:
        return "TokenNetObjective()"
