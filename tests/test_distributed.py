"""Data parallelism: two CPU processes (torchrun, gloo) make the same update as one process on the
combined batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

WORKER = textwrap.dedent(
    """
    import json, sys
    import torch
    from safetensors.torch import save_file
    from flowlm.denoisers import flm_loss
    from flowlm.models import FLM
    from flowlm.nets import DiTConfig
    from flowlm.training import TensorBatchSource, TrainConfig, init_distributed, train

    class FixedTimeCE:  # deterministic: the update depends only on the data and the weights
        def __call__(self, model, tokens):
            logits = model.net(0.5 * model.space.one_hot(tokens), torch.full((tokens.shape[0],), 0.5))
            return flm_loss(logits, tokens), {}

    out = sys.argv[1]
    torch.set_num_threads(1)
    ctx = init_distributed()
    torch.manual_seed(1000 + ctx.rank)  # different local inits: rank 0's weights must be broadcast
    model = FLM(DiTConfig(vocab_size=10, max_length=8, width=32, depth=2, heads=4, cond=16, dropout=0.0))
    data = torch.randint(0, 10, (64, 8), generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=3, batch_size=8, lr=1e-2, warmup_steps=0, grad_clip=0.5, progress=False)
    res = train(model, FixedTimeCE(), TensorBatchSource(data, 8, seed=5), cfg)
    if ctx.rank == 0:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out + "/params.safetensors")
        json.dump({"losses": res.losses, "world": ctx.world_size}, open(out + "/result.json", "w"))
    """
)


def _run(tmp_path, nproc: int):
    out = tmp_path / f"np{nproc}"
    out.mkdir()
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            env.pop(key, None)
        cmd = [sys.executable, str(script), str(out)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               str(script), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return load_file(out / "params.safetensors"), json.loads((out / "result.json").read_text())


@pytest.mark.slow
def test_two_processes_match_one_process_on_the_combined_batch(tmp_path):
    one, res1 = _run(tmp_path, 1)
    two, res2 = _run(tmp_path, 2)
    assert res1["world"] == 1 and res2["world"] == 2
    assert res2["losses"] == pytest.approx(res1["losses"], rel=1e-6, abs=1e-7)
    from flowlm.models import FLM
    from flowlm.nets import DiTConfig

    torch.manual_seed(1000)  # rank 0's initialization (broadcast to rank 1), as in the worker
    init = FLM(DiTConfig(vocab_size=10, max_length=8, width=32, depth=2, heads=4, cond=16, dropout=0.0)).state_dict()
    # compare the updates θ_final − θ_init: float32 summation order differs between one and two
    # processes, and Adam amplifies rounding in near-zero gradients to ~1e-6 absolute, far below the update size
    d1 = torch.cat([(one[k] - init[k]).flatten() for k in sorted(one)])
    d2 = torch.cat([(two[k] - init[k]).flatten() for k in sorted(one)])
    assert d1.norm() > 1e-2  # the weights really moved
    assert (d2 - d1).norm() / d1.norm() < 1e-4
    assert (d2 - d1).abs().max() < 1e-3 * d1.abs().max()
    assert res1["losses"][-1] < res1["losses"][0]
