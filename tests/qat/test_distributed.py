"""Tests of `qat train` under torchrun: two real CPU processes (Gloo) on 127.0.0.1, synthetic images.

One uninterrupted two-epoch run (watched for its sockets), one interrupted after epoch 1 by an
instrumented launch (each rank records its batches, steps and model), its resumption, and a
launch where one rank fails its checks; plus the environment parsing of qat.distributed.
"""

from __future__ import annotations

import csv
import ipaddress
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from hwsim.errors import UserError
from qat.checkpoint import read_checkpoint
from qat.cli import main as qat_main
from qat.distributed import Launch, launch_from_environment

REPO = Path(__file__).resolve().parents[2]
LSQ = REPO / "configs/quant/lsq_a4w4.yaml"  # LSQ: activation steps set from the first batch
IMAGES, BATCH, PROCESSES = 32, 8, 2
TRAIN = [
    "--model",
    "toynet",
    "--quant",
    str(LSQ),
    "--epochs",
    "2",
    "--synthetic",
    str(IMAGES),
    "--batch-size",
    str(BATCH),
    "--device",
    "cpu",
    "--val-fraction",  # every training image trains: the recorded shards cover the whole split
    "0",
]
RESUME = [a for a in TRAIN if a not in ("--quant", str(LSQ))]  # the checkpoint holds the quantization
TIMEOUT = 240  # seconds; a launch takes 10 to 25 on two busy cores, a hung one 30 min

# Run by torchrun in place of `-m qat`: the real command, with each rank recording, per epoch, the
# image indices of its training and test batches and its optimizer steps (into RECORD_DIR/rankR.json
# at the end), and its parameters after the first step; when epoch SNAPSHOT starts, each rank
# saves its model, and rank 0 copies the run directory to COPY (what an interruption after the
# previous epoch leaves). FAIL_RANK's checks fail with a UserError of its own.
INSTRUMENTED = """
import json, os, shutil, sys
import torch
import qat.commands.train, qat.data, qat.train
from hwsim.errors import UserError
from qat.cli import main

rank, record_dir = int(os.environ["RANK"]), os.environ["RECORD_DIR"]
snapshot, fail_rank = int(os.environ.get("SNAPSHOT", "0")), int(os.environ.get("FAIL_RANK", "-1"))
epochs, hooked = [], []
getitem, one_epoch, resolve_data = (
    qat.data.CIFAR10Batches.__getitem__, qat.train.train_one_epoch, qat.commands.train.resolve_data
)

def save(obj, name):
    torch.save(obj, os.path.join(record_dir, f"{name}{rank}.pt"))

def recording_getitem(self, indices):
    epochs[-1]["train" if self.augment else "test"].append([int(i) for i in indices])
    return getitem(self, indices)

def count(optimizer, *_):
    epochs[-1]["steps"] += 1
    if len(epochs) == 1 and epochs[0]["steps"] == 1:
        save([p.detach().clone() for g in optimizer.param_groups for p in g["params"]], "first_step")

def recording_epoch(model, loader, optimizer, *args, **kwargs):
    epochs.append({"train": [], "test": [], "steps": 0})
    if not hooked:
        hooked.append(optimizer.register_step_post_hook(count))
    if kwargs["description"].startswith(f"epoch {snapshot}/"):
        save({k: v.detach().clone() for k, v in model.module.state_dict().items()}, "model")
        if rank == 0:
            shutil.copytree(sys.argv[sys.argv.index("--out") + 1], os.environ["COPY"])
    return one_epoch(model, loader, optimizer, *args, **kwargs)

def failing_resolve_data(args):
    if rank == fail_rank:
        raise UserError(f"no data on this node (rank {rank})")
    return resolve_data(args)

qat.data.CIFAR10Batches.__getitem__ = recording_getitem
qat.train.train_one_epoch = recording_epoch
qat.commands.train.resolve_data = failing_resolve_data
code = main(sys.argv[1:])
with open(os.path.join(record_dir, f"rank{rank}.json"), "w") as f:
    json.dump(epochs, f)
sys.exit(code)
"""

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def loopback_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(MASTER_ADDR="127.0.0.1", GLOO_SOCKET_IFNAME="lo", PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.update(extra)
    return env


def torchrun(*argv: str, env: dict[str, str], cwd: Path, watch: list | None = None) -> tuple[int, str]:
    """``torchrun --standalone --nproc-per-node 2 ARGV`` -> (exit status, stdout and stderr); with
    ``watch``, the job's TCP sockets are sampled into it while it runs."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={PROCESSES}"]
    proc = subprocess.Popen(
        [*cmd, *argv], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    done = threading.Event()
    sampler = None
    if watch is not None:
        sampler = threading.Thread(target=sample_sockets, args=(proc.pid, done, watch), daemon=True)
        sampler.start()
    try:
        output, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        pytest.fail(f"torchrun did not end within {TIMEOUT} s (a hang):\n{output[-3000:]}")
    finally:
        done.set()
        if sampler is not None:
            sampler.join()
    return proc.returncode, output


# ---------------------------------------------------------------------------------------------
# Sockets, from /proc: (pid, is_worker, state, local address, remote address)

LISTEN, ESTABLISHED = "0A", "01"


def _address(field: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    host, port = field.split(":")
    raw = bytes.fromhex(host)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # each 32-bit word is little-endian
    ip = ipaddress.ip_address(words)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip, int(port, 16)


def _tcp_table() -> dict[str, tuple[str, tuple, tuple]]:
    table = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                table[cols[9]] = (cols[3], _address(cols[1]), _address(cols[2]))
    return table


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def sample_sockets(agent: int, done: threading.Event, seen: list) -> None:
    while not done.wait(0.1):
        pids = [(agent, False)] + [(pid, True) for pid in _children(agent)]
        table = _tcp_table()
        for pid, worker in pids:
            try:
                links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
            except OSError:
                continue
            for link in links:
                if link.startswith("socket:[") and link[8:-1] in table:
                    seen.append((pid, worker, *table[link[8:-1]]))


def check_loopback(seen: list) -> None:
    """Every connection of the job is between loopback addresses; every socket that the workers
    (qat, Gloo) listen on is bound to 127.0.0.1. torchrun's own store listens on all interfaces
    (PyTorch's TCPStore binds no address); its connections are checked like the others."""
    established = [s for s in seen if s[2] == ESTABLISHED]
    worker_links = [s for s in established if s[1]]
    assert worker_links, f"no connection of a worker was seen: {seen[:10]}"
    for _, _, _, (local, _), (remote, _) in established:
        assert local.is_loopback and remote.is_loopback, (local, remote)
    worker_listen = [s for s in seen if s[1] and s[2] == LISTEN]
    assert worker_listen, "no listening socket of a worker (Gloo) was seen"
    for _, _, _, (local, _), _ in worker_listen:
        assert local == ipaddress.ip_address("127.0.0.1"), local


# ---------------------------------------------------------------------------------------------


def metrics(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_two_processes_train_evaluate_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    whole, split, record = tmp_path / "whole", tmp_path / "split", tmp_path / "record"
    record.mkdir()
    script = tmp_path / "instrumented.py"
    script.write_text(INSTRUMENTED)

    # 1. two epochs; each rank records epoch 1, and the run directory after epoch 1 is copied
    sockets: list = []
    env = loopback_env(RECORD_DIR=str(record), SNAPSHOT="2", COPY=str(split))
    code, output = torchrun(
        str(script), "train", *TRAIN, "--out", str(whole), env=env, cwd=tmp_path, watch=sockets
    )
    assert code == 0, output
    check_loopback(sockets)
    assert_rank0_alone_printed(output, epochs=[1, 2])
    assert sorted(p.name for p in whole.iterdir()) == [
        ".hwsim-output",
        "best.pt",
        "checkpoint.pt",
        "metrics.csv",
    ]
    payload = read_checkpoint(whole / "checkpoint.pt")
    assert payload["epoch"] == 2 and payload["train_args"]["batch_size"] == BATCH
    assert not [k for k in payload["state_dict"] if k.startswith("module.")]

    ranks = [json.loads((record / f"rank{r}.json").read_text()) for r in range(PROCESSES)]
    share = IMAGES // PROCESSES
    for epoch in range(2):
        for r in ranks:  # each rank stepped through its own half of the shuffled images
            assert r[epoch]["steps"] == share // BATCH == len(r[epoch]["train"])
        shards = [{i for batch in r[epoch]["train"] for i in batch} for r in ranks]
        assert [len(s) for s in shards] == [share] * PROCESSES
        assert shards[0].isdisjoint(shards[1]) and shards[0] | shards[1] == set(range(IMAGES))
        tested = [i for r in ranks for batch in r[epoch]["test"] for i in batch]
        assert sorted(tested) == list(range(IMAGES))  # each test image once over the ranks
    assert ranks[0][0]["train"] != ranks[0][1]["train"]  # each epoch shuffles anew (set_epoch)
    # the first step's data-dependent initialization (LSQ activation steps) is rank 0's everywhere
    first = [torch.load(record / f"first_step{r}.pt", weights_only=True) for r in range(PROCESSES)]
    assert all(torch.equal(a, b) for a, b in zip(*first, strict=True))
    # after epoch 1 every rank held rank 0's model, and that is the checkpoint
    assert [r["epoch"] for r in metrics(split)] == ["1"]
    saved = read_checkpoint(split / "checkpoint.pt")["state_dict"]
    for r in range(PROCESSES):
        replica = torch.load(record / f"model{r}.pt", weights_only=True)
        assert replica.keys() == saved.keys()
        assert all(torch.equal(replica[k], saved[k]) for k in saved), f"rank {r} differs from the checkpoint"

    # the reported test accuracy is that of the saved model on the whole test set
    best = read_checkpoint(whole / "best.pt")
    code = qat_main(["eval", str(whole / "best.pt"), "--synthetic", str(IMAGES), "--device", "cpu"])
    evaluated = json.loads(capsys.readouterr().out)
    assert code == 0 and evaluated["images"] == IMAGES
    best_row = next(r for r in metrics(whole) if float(r["test_acc"]) == best["best_top1"])
    assert evaluated["top1"] == pytest.approx(float(best_row["test_acc"]), abs=1e-4)
    assert evaluated["loss"] == pytest.approx(float(best_row["test_loss"]), abs=1e-5)

    # 2. the plain entry point resumes the copy after epoch 1 and ends where the whole run ended
    code, output = torchrun(
        "-m", "qat", "train", *RESUME, "--out", str(split), "--resume", env=loopback_env(), cwd=tmp_path
    )
    assert code == 0, output
    assert_rank0_alone_printed(output, epochs=[2])
    resumed, reference = read_checkpoint(split / "checkpoint.pt"), read_checkpoint(whole / "checkpoint.pt")
    assert resumed["epoch"] == 2
    assert all(torch.equal(resumed["state_dict"][k], v) for k, v in reference["state_dict"].items())
    drop = "seconds"
    assert [{k: v for k, v in r.items() if k != drop} for r in metrics(split)] == [
        {k: v for k, v in r.items() if k != drop} for r in metrics(whole)
    ]


def assert_rank0_alone_printed(output: str, epochs: list[int]) -> None:
    """One header, one line per epoch, one summary: rank 0's (a second rank would double them)."""
    lines = output.splitlines()
    assert sum(line.startswith("training toynet") for line in lines) == 1, output
    assert f"x {PROCESSES} processes (gloo, batch {BATCH} per process)" in output
    assert [int(line.split()[1].split("/")[0]) for line in lines if line.startswith("epoch ")] == epochs
    summaries = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(summaries) == 1 and summaries[0]["epochs"] == 2, output


def test_a_rank_that_fails_its_checks_stops_every_rank(tmp_path: Path) -> None:
    """Rank 1 alone fails: rank 0 reports rank 1's message once, nobody waits, nothing is written."""
    script = tmp_path / "instrumented.py"
    script.write_text(INSTRUMENTED)
    out = tmp_path / "run"
    env = loopback_env(RECORD_DIR=str(tmp_path), FAIL_RANK="1")
    code, output = torchrun(str(script), "train", *TRAIN, "--out", str(out), env=env, cwd=tmp_path)
    assert code != 0
    errors = [line for line in output.splitlines() if line.startswith("qat train: error:")]
    assert errors == ["qat train: error: rank 1 of 2: no data on this node (rank 1)"], output
    assert not out.exists()


def test_launch_from_environment() -> None:
    assert launch_from_environment({}) is None
    env = {
        "RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
    }
    assert launch_from_environment(env) == Launch(rank=1, world_size=2, local_rank=1)
    with pytest.raises(UserError, match="does not set MASTER_ADDR, MASTER_PORT"):
        launch_from_environment({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    with pytest.raises(UserError, match="does not set LOCAL_RANK"):
        launch_from_environment({k: v for k, v in env.items() if k != "LOCAL_RANK"})
    with pytest.raises(UserError, match="WORLD_SIZE='two' is not an integer"):
        launch_from_environment({**env, "WORLD_SIZE": "two"})
    with pytest.raises(UserError, match="0 <= RANK < WORLD_SIZE"):
        launch_from_environment({**env, "RANK": "2"})
