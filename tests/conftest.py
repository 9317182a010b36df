"""Test-suite configuration.

Runtime shape/dtype checking is on for the whole suite: pytest is started with
``--jaxtyping-packages=flowlm,beartype.beartype`` (pyproject), so every jaxtyping annotation in
``flowlm`` is checked by beartype while the tests run.
"""

import os

import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))

settings.register_profile(
    "flowlm",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "flowlm"))
