"""Flow maps of two-time denoisers, the three distillers, JVP backends and few-step sampling.

* :mod:`~flowlm.flowmaps.two_time`     FlowMap(delta, flow), δ ↔ X ↔ average velocity
* :mod:`~flowlm.flowmaps.time_pairs`   per-sequence (s, u, t) draws shared by all distillers
* :mod:`~flowlm.flowmaps.jvp`          ExactJVP (forward mode) / FiniteDifferenceJVP
* :mod:`~flowlm.flowmaps.projections`  policies for targets that leave the simplex
* :mod:`~flowlm.flowmaps.distiller`    the Distiller base class
* :mod:`~flowlm.flowmaps.semigroup`, :mod:`~flowlm.flowmaps.lagrangian`, :mod:`~flowlm.flowmaps.eulerian`
* :mod:`~flowlm.flowmaps.sampler`      FlowMapSampler (N-step FMLM generation; a flowlm.samplers.Sampler)
* :mod:`~flowlm.flowmaps.residuals`    the residuals of one map for the distillers you trained
* :mod:`~flowlm.flowmaps.registry`     DISTILLERS: name -> distiller class

This layer never imports a network, the training loop, data or the CLI (DESIGN §4).
"""

from flowlm.denoisers import TwoTimeDenoiser
from flowlm.flowmaps.two_time import (
    FlowMap,
    average_velocity_from_delta,
    average_velocity_from_flow_map,
    delta_from_average_velocity,
    delta_from_flow_map,
    flow_map_from_average_velocity,
    flow_map_from_delta,
)
from flowlm.flowmaps.time_pairs import TimePairSampler, TimePairs
from flowlm.flowmaps.jvp import ExactJVP, FiniteDifferenceJVP, ForwardModeADError, JVPBackend
from flowlm.flowmaps.projections import PROJECTIONS, clip_to_simplex, sparsemax_projection, target_loss
from flowlm.flowmaps.distiller import Distiller, Target
from flowlm.flowmaps.semigroup import SemigroupDistiller
from flowlm.flowmaps.lagrangian import LagrangianDistiller, lagrangian_factor
from flowlm.flowmaps.eulerian import BOUNDARY_POLICIES, EulerianDistiller, eulerian_factor
from flowlm.flowmaps.sampler import FlowMapSampler
from flowlm.flowmaps.residuals import distiller_residual, residual_report
from flowlm.flowmaps.registry import DISTILLERS, distiller_class

__all__ = [
    "TwoTimeDenoiser",
    "FlowMap",
    "flow_map_from_delta",
    "delta_from_flow_map",
    "average_velocity_from_flow_map",
    "flow_map_from_average_velocity",
    "average_velocity_from_delta",
    "delta_from_average_velocity",
    "TimePairs",
    "TimePairSampler",
    "JVPBackend",
    "ExactJVP",
    "FiniteDifferenceJVP",
    "ForwardModeADError",
    "PROJECTIONS",
    "clip_to_simplex",
    "sparsemax_projection",
    "target_loss",
    "Distiller",
    "Target",
    "SemigroupDistiller",
    "LagrangianDistiller",
    "EulerianDistiller",
    "DISTILLERS",
    "distiller_class",
    "BOUNDARY_POLICIES",
    "lagrangian_factor",
    "eulerian_factor",
    "FlowMapSampler",
    "residual_report",
    "distiller_residual",
]
