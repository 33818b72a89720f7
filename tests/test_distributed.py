"""DistributedDataParallel on CPU: two processes (gloo backend, started by torchrun) train one
model; both ranks must end with identical parameters, and the loss must fall."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

WORKER = textwrap.dedent("""
    import json, logging, os, sys
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")  # every rank: rank 0 speaks
    dist.init_process_group("gloo")
    from pyro_vae import Callback, Dataset, ModelConfig, TrainConfig, build_model, fit
    from pyro_vae.data.sources import load_mnist5k
    from pyro_vae.training.validation import validation_elbo
    from pyro_vae.data.batch import binarize
    rank, out = dist.get_rank(), sys.argv[1]
    torch.manual_seed(rank)  # different initialisations: DDP must broadcast rank 0's
    data = load_mnist5k()
    train, val = Dataset(data.x[:600]), Dataset(data.x[600:800])
    mc = ModelConfig(data_shape=(1, 28, 28), latent_dim=4, hidden=(32,))
    vae = build_model(mc)

    class Heard(Callback):  # which rank calls the callbacks
        def on_epoch_end(self, epoch, row):
            with open(os.path.join(out, f"heard{rank}.txt"), "a") as f:
                f.write(f"{epoch}\\n")

    summary = fit(vae, (train, val), TrainConfig(epochs=3, batch_size=64, lr=3e-3, patience=None, device="cpu"),
                  os.path.join(out, "run"), model_config=mc, progress=False, callbacks=[Heard()])
    torch.save(vae.state_dict(), os.path.join(out, f"rank{rank}.pt"))
    with open(os.path.join(out, f"summary{rank}.json"), "w") as f:
        json.dump(summary, f)
    dist.destroy_process_group()
""")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_two_process_ddp_training_keeps_ranks_identical(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        str(script),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # rank 0 says once that the run is distributed, and how the batch is split
    assert proc.stdout.count("distributed: 2 processes (gloo), global batch 64 = 2 x 32") == 1, proc.stdout[-3000:]
    a = torch.load(tmp_path / "rank0.pt")
    b = torch.load(tmp_path / "rank1.pt")
    for name in a:
        assert torch.equal(a[name], b[name]), name
    s0 = json.loads((tmp_path / "summary0.json").read_text())
    s1 = json.loads((tmp_path / "summary1.json").read_text())
    assert s0["world_size"] == 2 and s0["best_val_elbo"] == s1["best_val_elbo"]
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3  # rank 0 alone writes
    assert (tmp_path / "heard0.txt").read_text().split() == ["1", "2", "3"]  # and calls the callbacks
    assert not (tmp_path / "heard1.txt").exists()
    assert rows[-1]["val_elbo"] > rows[0]["val_elbo"] + 50  # ~-543 untrained; the loss falls
