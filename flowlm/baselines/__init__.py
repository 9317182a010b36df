"""The math of the same-backbone baselines (REFERENCE.md §2), with no network inside.

* :mod:`~flowlm.baselines.categorical`: float64 categorical draws (exponential race, i.e. Gumbel-max),
  temperature and nucleus (top-p) warping;
* :mod:`~flowlm.baselines.autoregressive`: next-token inputs/targets with a ``[BOS]`` id, the AR
  cross-entropy and the ancestral AR sampler;
* :mod:`~flowlm.baselines.masked`: absorbing-state masked diffusion (MDLM): the log-linear masking
  schedule, SUBS, the 1/t-weighted loss and the ancestral sampler with caching;
* :mod:`~flowlm.baselines.oracles`: exact denoisers of finite-set laws for both (tests, teaching).

The models that put the DiT behind these functions are :class:`flowlm.models.AR` and
:class:`flowlm.models.MDLM`.
"""

from flowlm.baselines.autoregressive import ar_inputs, ar_loss, ar_sample
from flowlm.baselines.categorical import sample_categorical, top_p_filter, warp_logits
from flowlm.baselines.masked import LogLinearMasking, mask_tokens, mdlm_loss, mdlm_sample, subs_log_probs
from flowlm.baselines.oracles import FiniteSetAR, FiniteSetMasked

__all__ = [
    "sample_categorical", "top_p_filter", "warp_logits",
    "ar_inputs", "ar_loss", "ar_sample",
    "LogLinearMasking", "mask_tokens", "subs_log_probs", "mdlm_loss", "mdlm_sample",
    "FiniteSetAR", "FiniteSetMasked",
]
