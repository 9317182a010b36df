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
    """The FLM loss of :meth:`flowlm.models.FLM.loss` (CE against clean tokens at τ ~ U[0,1])."""

    def __call__(self, model: nn.Module, tokens: Int[Tensor, "B L"]) -> tuple[Tensor, dict[str, Any]]:
        return model.loss(tokens)

    def __repr__(self) -> str:
        return "FLMObjective()"


class DistillationObjective:
    """Flow-map distillation: ``distiller.loss(model.delta, tokens, space=model.space)``.

    ``model`` is an :class:`flowlm.models.FMLM` (the student); the distiller holds the frozen teacher.
    """

    def __init__(self, distiller: Any) -> None:
        self.distiller = distiller

    def __call__(self, model: nn.Module, tokens: Int[Tensor, "B L"]) -> tuple[Tensor, dict[str, Any]]:
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
