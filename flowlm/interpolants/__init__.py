"""Interpolants (α, β) and time schedules (interpolation time t ↔ model time τ)."""

from flowlm.interpolants.base import FunctionInterpolant, Interpolant, expand_time
from flowlm.interpolants.builtins import Cosine, Linear
from flowlm.interpolants.schedule import IdentitySchedule, MixtureSchedule, TimeSchedule, stratified_uniform
from flowlm.interpolants.decoding_error import DecodingErrorSchedule

__all__ = [
    "Interpolant",
    "FunctionInterpolant",
    "Linear",
    "Cosine",
    "expand_time",
    "TimeSchedule",
    "IdentitySchedule",
    "MixtureSchedule",
    "DecodingErrorSchedule",
    "stratified_uniform",
]
