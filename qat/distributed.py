"""Data-parallel training under ``torchrun``: one process per GPU (or per CPU worker), one model.

Place in the flow: ``qat train`` (qat/commands/train.py) reads the launch from the environment
that ``torchrun`` sets (:func:`launch_from_environment`), starts the process group
(:func:`started`: NCCL on CUDA, Gloo on CPU) and hands the :class:`Context` to
:func:`qat.train.fit`, which wraps the model in DistributedDataParallel and reduces the metrics
through it. Without torchrun the context is a single process and every collective is a no-op.

The rules every rank keeps:

* every rank runs the same setup (flags, data, checkpoint); :meth:`Context.agreeing` lets no rank
  start training while another has failed, and rank 0 reports the first failure (others exit 2
  silently);
* rank 0 alone writes files, prints and shows progress bars;
* every rank ends with :func:`torch.distributed.destroy_process_group`, also on an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from hwsim.errors import UserError

LAUNCH_VARS: tuple[str, ...] = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
RENDEZVOUS_VARS: tuple[str, ...] = ("MASTER_ADDR", "MASTER_PORT")
USER_ERROR_STATUS = 2  # the exit status of a UserError (hwsim.cli.run_cli)


@dataclass(frozen=True)
class Launch:
    """This process's place in a ``torchrun`` job: global rank, number of processes, rank on its node."""

    rank: int
    world_size: int
    local_rank: int


def _env_int(environ: Mapping[str, str], name: str) -> int:
    text = environ[name]
    try:
        return int(text)
    except ValueError:
        raise UserError(
            f"environment variable {name}={text!r} is not an integer; torchrun sets it, so start "
            "`qat train` through torchrun, or unset it for a single-process run"
        ) from None


def launch_from_environment(environ: Mapping[str, str] | None = None) -> Launch | None:
    """The :class:`Launch` that ``torchrun`` describes in ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR`` and ``MASTER_PORT``; None when none of the first three is set (a single
    process). Some but not all of them set, or values out of range, is a UserError."""
    env = os.environ if environ is None else environ
    if not any(name in env for name in LAUNCH_VARS):
        return None
    missing = [name for name in LAUNCH_VARS + RENDEZVOUS_VARS if not env.get(name)]
    if missing:
        found = ", ".join(f"{name}={env[name]}" for name in LAUNCH_VARS if name in env)
        raise UserError(
            f"the environment describes a distributed launch ({found}) but does not set "
            f"{', '.join(missing)}; start it with `torchrun --nproc-per-node N -m qat train ...`, which "
            f"sets all of {', '.join(LAUNCH_VARS + RENDEZVOUS_VARS)}, or unset them for one process"
        )
    rank, world, local = (_env_int(env, name) for name in LAUNCH_VARS)
    if world < 1 or not 0 <= rank < world or local < 0:
        raise UserError(
            f"RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}: expected WORLD_SIZE >= 1, "
            "0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0 (as torchrun sets them)"
        )
    return Launch(rank=rank, world_size=world, local_rank=local)


@dataclass(frozen=True)
class Context:
    """One process's view of the run; with ``backend`` None it is the only process."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes, prints and shows progress."""
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int] | None:
        """``(rank, world_size)`` for the loaders when the data is split between processes, else None."""
        return (self.rank, self.world_size) if self.world_size > 1 else None

    def log(self, message: str) -> None:
        """Print ``message`` on rank 0 only."""
        if self.is_main:
            print(message, flush=True)

    def wrap(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> nn.Module:
        """``model`` in DistributedDataParallel (``model`` itself for one process). After the first
        optimizer step rank 0's parameters are copied to every rank once: a parameter set from the
        first batch (an LSQ activation step) then comes from rank 0's batch everywhere."""
        if not self.distributed:
            return model
        pending = [True]  # the hook stays (removing it while the optimizer runs its hooks breaks them)

        def after_first_step(*_: object) -> None:
            if pending:
                pending.clear()
                self.copy_from_main(model.parameters())

        optimizer.register_step_post_hook(after_first_step)
        index = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=index, output_device=index[0] if index else None)

    def copy_from_main(self, tensors: Iterable[torch.Tensor]) -> None:
        """Overwrite ``tensors`` (the same list on every rank) with rank 0's values."""
        if not self.distributed:
            return
        with torch.no_grad():
            for t in tensors:
                dist.broadcast(t.data, src=0)

    def sync_model(self, model: nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers (BN statistics, activation ranges): the
        model every rank evaluates is the one rank 0 saves."""
        self.copy_from_main(chain(model.parameters(), model.buffers()))

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the ranks (in place; ``values`` itself for one process)."""
        if self.distributed:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    @contextmanager
    def agreeing(self) -> Iterator[None]:
        """Run the block on every rank, then compare: if it failed anywhere, rank 0 raises the
        failure (its own, or a UserError naming the failed rank and its message) and the other
        ranks exit with status 2 without a message; a rank whose failure is not a UserError raises
        it, traceback and all. No rank is left waiting for one that gave up."""
        if not self.distributed:
            yield
            return
        failure: Exception | None = None
        try:
            yield
        except Exception as err:  # a KeyboardInterrupt reaches every rank by itself (torchrun forwards it)
            failure = err
        own = None if failure is None else _describe(failure)
        messages: list[str | None] = [None] * self.world_size
        dist.all_gather_object(messages, own)
        if failure is not None and (self.is_main or not isinstance(failure, UserError)):
            raise failure
        failed = [(rank, text) for rank, text in enumerate(messages) if text is not None]
        if not failed:
            return
        if self.is_main:
            rank, text = failed[0]
            more = len(failed) - 1
            others = f" (and {more} other rank{'s' if more > 1 else ''})" if more else ""
            raise UserError(f"rank {rank} of {self.world_size}{others}: {text}")
        raise SystemExit(USER_ERROR_STATUS)

    @contextmanager
    def reported_by_main(self) -> Iterator[None]:
        """For a block whose UserErrors every rank raises alike (a diverged loss): rank 0 reports it,
        the other ranks exit with status 2 without repeating it."""
        try:
            yield
        except UserError:
            if self.is_main:
                raise
            raise SystemExit(USER_ERROR_STATUS) from None


def _describe(err: Exception) -> str:
    return str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"


def backend_for(device: torch.device) -> str:
    """NCCL for a CUDA device, Gloo for the CPU; a UserError when this PyTorch lacks it."""
    if not dist.is_available():
        raise UserError("this PyTorch build has no torch.distributed; run `qat train` without torchrun")
    if device.type == "cuda":
        if not dist.is_nccl_available():
            raise UserError("this PyTorch build has no NCCL for CUDA processes; pass --device cpu (Gloo)")
        return "nccl"
    if not dist.is_gloo_available():
        raise UserError("this PyTorch build has no Gloo for CPU processes; run on CUDA (NCCL)")
    return "gloo"


@contextmanager
def started(launch: Launch | None, device: torch.device) -> Iterator[Context]:
    """The :class:`Context` of this process: for a ``torchrun`` launch the process group is up
    within the block (``env://`` rendezvous) and destroyed when it ends, however it ends."""
    if launch is None:
        yield Context(device=device)
        return
    backend = backend_for(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend,
        rank=launch.rank,
        world_size=launch.world_size,
        device_id=device if device.type == "cuda" else None,
    )
    try:
        yield Context(rank=launch.rank, world_size=launch.world_size, device=device, backend=backend)
    finally:
        dist.destroy_process_group()
