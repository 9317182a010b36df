"""Samplers: one hierarchy for FLM and FMLM sampling (:mod:`flowlm.samplers.base`).

``sampler(model_fn, flow, x0, *, space=None, prompt=None, return_trajectory=False, generator=None)
-> SamplerOutput``; each sampler declares its ``order``. The few-step flow-map sampler
(:class:`flowlm.flowmaps.FlowMapSampler`) is a :class:`Sampler` too.
"""

from flowlm.samplers.base import FixedStepSampler, FLMSampler, Sampler, SamplerOutput
from flowlm.samplers.decode import argmax_decode
from flowlm.samplers.euler import EulerSampler
from flowlm.samplers.heun import HeunSampler
from flowlm.samplers.torchdiffeq_sampler import TorchdiffeqSampler

__all__ = [
    "Sampler",
    "FLMSampler",
    "FixedStepSampler",
    "SamplerOutput",
    "EulerSampler",
    "HeunSampler",
    "TorchdiffeqSampler",
    "argmax_decode",
]
