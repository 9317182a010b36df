"""Guidance: autoguidance for FLM and FMLM, reward guidance through the flow map, rewards.

* :mod:`~flowlm.guidance.autoguidance`  D_η = D_weak + η(D − D_weak) (and the logit form) as
  Denoiser / TwoTimeDenoiser subclasses; the dropout weak model
* :mod:`~flowlm.guidance.models`        the same for FLM / FMLM models and checkpoints (``flowlm sample --guidance``)

Every guided object is a :class:`~flowlm.denoisers.Denoiser` or
:class:`~flowlm.denoisers.TwoTimeDenoiser`, so it composes with every sampler.
"""

from flowlm.guidance.autoguidance import (
    FORMS,
    AutoGuidedDenoiser,
    AutoGuidedTwoTimeDenoiser,
    DropoutDenoiser,
    DropoutTwoTimeDenoiser,
    check_guidance_weight,
)
from flowlm.guidance.models import autoguided, generate_guided, load_weak_model, sample_guided

__all__ = [
    "FORMS",
    "AutoGuidedDenoiser",
    "AutoGuidedTwoTimeDenoiser",
    "DropoutDenoiser",
    "DropoutTwoTimeDenoiser",
    "check_guidance_weight",
    "autoguided",
    "load_weak_model",
    "sample_guided",
    "generate_guided",
]
