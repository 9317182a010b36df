"""FLM samplers: integrate the probability-flow ODE from noise, end with the denoiser, decode.

``sampler(den, interpolant, schedule, x0, space=None) -> SamplerOutput``.
"""

from flowlm.samplers.base import FixedStepSampler, Sampler, SamplerOutput
from flowlm.samplers.decode import argmax_decode
from flowlm.samplers.euler import EulerSampler
from flowlm.samplers.heun import HeunSampler
from flowlm.samplers.pf_ode import LogSNRFlow, nu_of_t, t_of_nu
from flowlm.samplers.torchdiffeq_sampler import TorchdiffeqSampler

__all__ = [
    "Sampler",
    "FixedStepSampler",
    "SamplerOutput",
    "EulerSampler",
    "HeunSampler",
    "TorchdiffeqSampler",
    "argmax_decode",
    "LogSNRFlow",
    "nu_of_t",
    "t_of_nu",
]
