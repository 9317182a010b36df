"""Guidance: autoguidance for FLM and FMLM, reward guidance through the flow map, rewards.

* :mod:`~flowlm.guidance.autoguidance`  D_η = D_weak + η(D − D_weak) (and the logit form) as
  Denoiser / TwoTimeDenoiser subclasses; the dropout weak model
* :mod:`~flowlm.guidance.rewards`        differentiable rewards of soft tokens r(p: [B, L, V]) -> [B] (WordSetReward, BagOfTokensClassifier)
* :mod:`~flowlm.guidance.reward_guidance`  RewardGuidedSampler: FMRG (Euclidean, Jacobian) through the flow map
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
from flowlm.guidance.rewards import REWARD_MODES, BagOfTokensClassifier, Reward, WordSetReward, evaluate_reward
from flowlm.guidance.reward_guidance import VARIANTS, RewardGuidedSampler
from flowlm.guidance.models import autoguided, generate_guided, load_weak_model, mdlm_autoguided, sample_guided

__all__ = [
    "FORMS",
    "AutoGuidedDenoiser",
    "AutoGuidedTwoTimeDenoiser",
    "DropoutDenoiser",
    "DropoutTwoTimeDenoiser",
    "check_guidance_weight",
    "Reward",
    "REWARD_MODES",
    "WordSetReward",
    "BagOfTokensClassifier",
    "evaluate_reward",
    "VARIANTS",
    "RewardGuidedSampler",
    "autoguided",
    "mdlm_autoguided",
    "load_weak_model",
    "sample_guided",
    "generate_guided",
]
