"""Networks: the DiT backbone, attention, time conditioning, the projected state space, wrappers.

``DiT(config)(h, tau[, tau_t]) -> logits`` works in *model time* τ on the projected state
``h = x @ E``; :class:`NetDenoiser` / :class:`NetTwoTimeDenoiser` adapt it to the math layer's
``den(x, t)`` / ``delta(x, s, t)`` protocols in interpolation time.
"""

from flowlm.nets.attention import SelfAttention, attention
from flowlm.nets.dit import DiT, DiTBlock, DiTConfig, LayerNorm
from flowlm.nets.fused_ce import linear_softcap_cross_entropy
from flowlm.nets.projection import ProjectedSpace
from flowlm.nets.rope import RotaryEmbedding, apply_rotary
from flowlm.nets.time_embedding import TimeEmbedder, sinusoidal_embedding
from flowlm.nets.wrappers import NetDenoiser, NetTwoTimeDenoiser, VelocityNetDenoiser

__all__ = [
    "DiT",
    "DiTBlock",
    "DiTConfig",
    "LayerNorm",
    "SelfAttention",
    "attention",
    "RotaryEmbedding",
    "apply_rotary",
    "TimeEmbedder",
    "sinusoidal_embedding",
    "ProjectedSpace",
    "linear_softcap_cross_entropy",
    "NetDenoiser",
    "VelocityNetDenoiser",
    "NetTwoTimeDenoiser",
]

import importlib.util as _importlib_util

if _importlib_util.find_spec("flowlm.nets.mlp") is not None:  # the small MLP denoiser (flow-map work's module)
    from flowlm.nets import mlp as _mlp
    from flowlm.nets.mlp import *  # noqa: F401,F403

    __all__ += list(getattr(_mlp, "__all__", []))
