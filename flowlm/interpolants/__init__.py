"""Interpolants (α, β), time schedules (interpolation time t ↔ model time τ) and the log-SNR time
ν = log(1 + ρ) in which the probability-flow ODE is non-stiff (used by samplers and oracles)."""

from flowlm.interpolants.base import FunctionInterpolant, Interpolant, expand_time
from flowlm.interpolants.builtins import INTERPOLANTS, Cosine, Linear, Quadratic, interpolant_from_name, register_interpolant
from flowlm.interpolants.schedule import IdentitySchedule, MixtureSchedule, TimeSchedule, stratified_uniform
from flowlm.interpolants.decoding_error import DecodingErrorSchedule
from flowlm.interpolants.logsnr import LogSNRFlow, nu_of_t, t_of_nu

__all__ = [
    "Interpolant",
    "FunctionInterpolant",
    "Linear",
    "Cosine",
    "Quadratic",
    "INTERPOLANTS",
    "interpolant_from_name",
    "register_interpolant",
    "expand_time",
    "TimeSchedule",
    "IdentitySchedule",
    "MixtureSchedule",
    "DecodingErrorSchedule",
    "stratified_uniform",
    "LogSNRFlow",
    "nu_of_t",
    "t_of_nu",
]
