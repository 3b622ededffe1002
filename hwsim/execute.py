"""The execution layer: a command's independent tasks run in this process, on a local pool, or on Dask.

Place in the flow: ``hwsim sweep`` (one layer x width a task), ``hwsim simulate`` on several
arrays (one hardware configuration a task) and ``hwsim demo`` (one model's comparison, or one of
its sweeps) hand their tasks to :func:`run_tasks`; which backend runs them is the user's choice
(:func:`add_executor_arguments`, one spelling in every command):

- ``serial``: one after the other in this process;
- ``local`` (the default): a pool of worker processes on this machine's cores (``--jobs``; 1 runs
  in this process);
- ``dask``: a Dask distributed cluster, the scheduler at ``--scheduler tcp://HOST:PORT`` (or
  ``DASK_SCHEDULER_ADDRESS``), else a ``LocalCluster`` of ``--jobs`` single-threaded worker
  processes on 127.0.0.1. Dask is an optional extra (``pip install -e .[dask]``).

What every backend shares: a task is ``fn(shared, task)`` with ``fn`` a module-level function,
``shared`` what all tasks read (a bundle, input codes: sent once per worker process, by ``fork`` or
as one Dask task every task depends on, never per task; or a :class:`Recipe` that each worker
builds for itself) and ``task`` plain data; the results come back
in the order of the tasks, so a run's output does not depend on the backend or the number of
workers (tested ``==``). Costlier tasks (``cost``) start first. Inside a worker an emulation uses
one thread (the workers already share the cores). A progress bar counts finished tasks, wherever
they ran. With a :class:`hwsim.journal.Journal`, every finished task is recorded as it arrives
and tasks recorded by an earlier run are not run again (``--resume``).

Faults: a Dask worker that dies mid-task has its task run again elsewhere by the scheduler, at
most ``distributed.scheduler.allowed-failures`` times (Dask's default 3); a task that raises is
retried ``retries`` times. A local worker that dies stops the run with a clear error (the finished
tasks stay in the journal). An unreachable scheduler is an error after Dask's connect timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Protocol

from tqdm import tqdm

from hwsim import emulator
from hwsim.errors import UserError
from hwsim.flags import MAX_WORKERS, check_int, jobs_int
from hwsim.journal import Journal, task_key

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"  # Dask's own variable for the scheduler-address setting
NANNY_ENV = "distributed.nanny.pre-spawn-environ"  # what Dask's nannies put in their workers' environment
DASK_INSTALL = "pip install -e '.[dask]'  (or: pip install 'dask[distributed]==2026.8.0')"

TaskFn = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class ExecutorConfig:
    """Where a command's tasks run (see the module docstring); validated on construction.

    ``workers``: processes of the local pool, or of the Dask ``LocalCluster`` when no scheduler is
    given (None: every core this process may use). ``scheduler``: a Dask scheduler's address.
    ``retries``: how often Dask runs a task again that raised. How long to wait for a scheduler is
    Dask's own setting ``distributed.comm.timeouts.connect`` (default 30 s; e.g.
    ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s``).
    """

    kind: str = "local"
    workers: int | None = None
    scheduler: str | None = None
    retries: int = 1

    def __post_init__(self) -> None:
        if self.kind not in BACKENDS:
            raise UserError(f"--executor {self.kind!r} is not one of {', '.join(BACKENDS)}")
        if self.workers is not None:
            check_int("--jobs", self.workers, 1, MAX_WORKERS)
        check_int("retries", self.retries, 0, 100)
        if self.scheduler is not None and self.kind != "dask":
            raise UserError(f"--scheduler {self.scheduler}: a scheduler is for --executor dask only")

    @property
    def parallel_workers(self) -> int:
        """The workers of a local pool or LocalCluster (``workers``, else every core)."""
        return self.workers or emulator.available_cores()

    def describe(self) -> str:
        if self.kind == "dask":
            where = (
                self.scheduler or os.environ.get(SCHEDULER_ENV) or f"LocalCluster of {self.parallel_workers}"
            )
            return f"dask ({where})"
        if self.kind == "local" and self.parallel_workers > 1:
            return f"local ({self.parallel_workers} processes)"
        return "serial"


_BUILT: dict[str, Any] = {}  # token -> value of the recipes this process built (the latest few)
_BUILT_KEEP = 2
_BUILDING = threading.Lock()


@dataclass(frozen=True, eq=False)
class Recipe:
    """Shared data that each process builds for itself from smaller inputs: ``build(*args)``.

    The command builds it once (:meth:`value`), and a local pool's forked workers inherit what it
    built; a Dask worker receives only ``build`` and ``args`` and builds it once per process, when
    its first task needs it. For data much larger than its inputs (a sweep's cached tensors: 160
    MB for 64 images of a ResNet20, from a 1 MB bundle), computing is cheaper than shipping.
    """

    build: Callable[..., Any]
    args: tuple[Any, ...]
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def value(self) -> Any:
        """The built value (built on first use in this process)."""
        with _BUILDING:
            if self.token not in _BUILT:
                while len(_BUILT) >= _BUILT_KEEP:
                    _BUILT.pop(next(iter(_BUILT)))
                _BUILT[self.token] = self.build(*self.args)
            return _BUILT[self.token]


def _resolved(shared: Any) -> Any:
    return shared.value() if isinstance(shared, Recipe) else shared


class Backend(Protocol):
    """Runs ``fn(shared, task)`` for each ``(index, task)``; calls ``done(index, result)`` as each ends."""

    def __call__(
        self,
        config: ExecutorConfig,
        fn: TaskFn,
        shared: Any,
        tasks: Sequence[tuple[int, Any]],
        done: Callable[[int, Any], None],
    ) -> None: ...


BACKENDS: dict[str, Backend] = {}


def register_backend(name: str) -> Callable[[Backend], Backend]:
    """Register a backend under ``name`` (a choice of ``--executor``)."""

    def add(backend: Backend) -> Backend:
        BACKENDS[name] = backend
        return backend

    return add


def _in_worker(fn: TaskFn, shared: Any, task: Any) -> Any:
    """A task as a worker runs it: its emulations on one thread (the workers share the cores)."""
    emulator.set_worker_threads(1)
    return fn(_resolved(shared), task)


def _identity(value: Any) -> Any:
    return value


@register_backend("serial")
def _serial(
    config: ExecutorConfig, fn: TaskFn, shared: Any, tasks: Sequence[tuple[int, Any]], done: Any
) -> None:
    shared = _resolved(shared)
    for i, task in tasks:
        done(i, fn(shared, task))


_SHARED: Any = None  # a local worker's shared data (set once, when the pool starts it)


def _start_local_worker(shared: Any) -> None:
    """A local worker starts: ``shared`` kept; Ctrl-C (sent to the whole process group) left to the
    command, which stops the workers itself; SIGTERM ends a worker at once, silently.

    tqdm's own lock, which every ``tqdm()`` takes (even a disabled one: a worker's emulations
    make them), is a semaphore that a forked worker shares with the command: a worker stopped
    while it holds it (terminated on an error or a signal, or killed) would leave the command's
    progress bar waiting for it forever. A worker draws no bar, so it gets a lock of its own.
    """
    global _SHARED
    _SHARED = shared
    tqdm.set_lock(threading.RLock())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _in_local_worker(fn: TaskFn, task: Any) -> Any:
    return _in_worker(fn, _SHARED, task)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now: pending tasks cancelled, running workers terminated (an error or a signal)."""
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        with contextlib.suppress(Exception):
            p.terminate()
    for p in processes:
        with contextlib.suppress(Exception):
            p.join(timeout=5)


@register_backend("local")
def _local(
    config: ExecutorConfig, fn: TaskFn, shared: Any, tasks: Sequence[tuple[int, Any]], done: Any
) -> None:
    workers = min(config.parallel_workers, len(tasks))
    if workers <= 1:
        _serial(config, fn, shared, tasks, done)
        return
    # forked workers inherit ``shared`` (no copy is pickled); elsewhere it is pickled once per worker
    shared = _resolved(shared)
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    pool = ProcessPoolExecutor(workers, context, _start_local_worker, (shared,))
    try:
        futures = {pool.submit(_in_local_worker, fn, task): i for i, task in tasks}
        for future in as_completed(futures):
            try:
                result = future.result()
            except BrokenProcessPool:
                raise UserError(
                    "a worker process of the local pool died (killed, or out of memory); the "
                    "finished tasks are kept: run the same command with --resume"
                ) from None
            done(futures[future], result)
    except BaseException:
        _stop_pool(pool)
        raise
    pool.shutdown(wait=True)


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise UserError(
            f"--executor dask needs Dask distributed, which is not installed: {DASK_INSTALL}"
        ) from None
    return distributed


@contextlib.contextmanager
def dask_client(config: ExecutorConfig) -> Iterator[Any]:
    """A ``distributed.Client`` on ``config.scheduler`` (or ``DASK_SCHEDULER_ADDRESS``), else on a
    ``LocalCluster`` of ``config.parallel_workers`` single-threaded processes bound to 127.0.0.1."""
    distributed = _import_distributed()
    address = config.scheduler or os.environ.get(SCHEDULER_ENV) or None
    if address is None:
        import dask

        # Dask's nannies set MALLOC_TRIM_THRESHOLD_ in their workers, which makes glibc map and unmap
        # every large temporary array: the emulator runs 1.8x slower (measured); not here.
        with dask.config.set({f"{NANNY_ENV}.MALLOC_TRIM_THRESHOLD_": None}):
            cluster = distributed.LocalCluster(
                n_workers=config.parallel_workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
        try:
            with distributed.Client(cluster, set_as_default=False) as client:
                yield client
        finally:
            cluster.close()
        return
    shown = f"--scheduler {address}" if config.scheduler else f"{SCHEDULER_ENV}={address}"
    import dask
    from distributed.comm import parse_address, parse_host_port

    def not_an_address(err: Exception) -> UserError:
        return UserError(f"{shown}: not a scheduler address ({err}); expected tcp://HOST:PORT")

    try:  # an address Dask cannot parse is refused before a client exists
        scheme, location = parse_address(address)
        if scheme == "tcp":
            parse_host_port(location)
    except (ValueError, TypeError) as err:
        raise not_an_address(err) from None
    timeout = dask.config.get("distributed.comm.timeouts.connect")
    try:
        client = distributed.Client(address, set_as_default=False)
    except (OSError, TimeoutError) as err:
        raise UserError(
            f"{shown}: no Dask scheduler answered within {timeout} ({err}); start one (dask scheduler "
            "--host HOST) or correct the address (tcp://HOST:PORT); the wait is Dask's setting "
            "distributed.comm.timeouts.connect"
        ) from None
    except (ValueError, TypeError) as err:  # e.g. a scheme no Dask transport knows
        raise not_an_address(err) from None
    with client:
        yield client


@register_backend("dask")
def _dask(
    config: ExecutorConfig, fn: TaskFn, shared: Any, tasks: Sequence[tuple[int, Any]], done: Any
) -> None:
    distributed = _import_distributed()
    from distributed.scheduler import KilledWorker

    with dask_client(config) as client:
        run = uuid.uuid4().hex[:8]
        # The shared data as a task of its own, which every task depends on: if every copy is lost
        # with the workers holding them, the scheduler computes it again (scattered data cannot be
        # recomputed, and Dask's active memory manager drops extra copies as the run ends).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
            shared_future = client.submit(
                _identity, shared, key=f"hwsim-{run}-shared", pure=False, priority=len(tasks) + 1
            )
        # a copy on every worker, so that the scheduler's preference for the worker holding a
        # task's data does not leave the others idle (Dask keeps the copies while tasks wait);
        # only a balance: when a worker dies meanwhile (the scheduler then computes the shared
        # task again), the run goes on without it
        with contextlib.suppress(Exception):
            client.replicate([shared_future])
        futures = {}
        for rank, (i, task) in enumerate(tasks):
            key = f"hwsim-{run}-{i}"
            future = client.submit(
                _in_worker,
                fn,
                shared_future,
                task,
                key=key,
                retries=config.retries,
                pure=False,
                priority=len(tasks) - rank,  # the order given: costliest first
            )
            futures[future] = i
        try:
            for future in distributed.as_completed(list(futures), loop=client.loop):
                try:
                    result = future.result()
                except KilledWorker as err:
                    raise UserError(
                        f"Dask: a task killed every worker that ran it ({err}); out of memory? the "
                        "finished tasks are kept: run the same command with --resume"
                    ) from None
                done(futures.pop(future), result)  # released: the worker may drop the result
        except BaseException:
            client.cancel([*futures, shared_future])
            raise


def run_tasks(
    fn: TaskFn,
    shared: Any,
    tasks: Sequence[Any],
    config: ExecutorConfig | None = None,
    *,
    cost: Callable[[Any], float] | None = None,
    journal: Journal | None = None,
    desc: str = "tasks",
    progress: bool = False,
) -> list[Any]:
    """``[fn(shared, t) for t in tasks]``, run where ``config`` says (see the module docstring).

    ``cost(task)``: the costlier tasks start first. ``journal``: record each result as it
    arrives; the tasks it already holds are taken from it and not run.
    """
    config = config or ExecutorConfig()
    results: list[Any] = [None] * len(tasks)
    finished = [False] * len(tasks)
    if journal is not None:
        journal.tasks = len(tasks)
        recorded = journal.load()
        for i, task in enumerate(tasks):
            key = task_key(task)
            if key in recorded:
                results[i], finished[i] = recorded[key], True
        resumed = sum(finished)
        if resumed:
            print(
                f"hwsim: --resume: {resumed} of {len(tasks)} tasks taken from {journal.path}",
                file=sys.stderr,
            )
    pending = [i for i in range(len(tasks)) if not finished[i]]
    if cost is not None:
        pending.sort(key=lambda i: -cost(tasks[i]))
    bar = tqdm(
        total=len(tasks), initial=len(tasks) - len(pending), disable=not progress, desc=desc, unit="task"
    )

    def done(i: int, result: Any) -> None:
        if journal is not None:
            journal.record(tasks[i], result)
        results[i] = result
        finished[i] = True
        bar.update()

    try:
        if pending:
            BACKENDS[config.kind](config, fn, shared, [(i, tasks[i]) for i in pending], done)
    finally:
        bar.close()
    assert all(finished)
    return results


def add_executor_arguments(parser: argparse.ArgumentParser, *, what: str = "tasks") -> None:
    """``--executor``, ``--jobs``, ``--scheduler`` and ``--resume``: one spelling in every command."""
    group = parser.add_argument_group("where the work runs")
    group.add_argument(
        "--executor",
        choices=tuple(BACKENDS),
        default="local",
        help=f"run the {what} in this process (serial), on a pool of this machine's cores (local, the "
        "default) or on a Dask cluster (dask: --scheduler, else a LocalCluster on 127.0.0.1); the "
        "results are the same",
    )
    group.add_argument(
        "--jobs",
        type=jobs_int,
        default=None,
        help=f"worker processes of the local pool or the Dask LocalCluster (default: every core, here "
        f"{emulator.available_cores()}; 1: in this process)",
    )
    group.add_argument(
        "--scheduler",
        default=None,
        metavar="tcp://HOST:PORT",
        help=f"the Dask scheduler of --executor dask (default: ${SCHEDULER_ENV}, else a LocalCluster)",
    )
    group.add_argument(
        "--resume",
        action="store_true",
        help=f"take the {what} an interrupted run of the same command finished (its journal beside "
        "the output) and run only the rest",
    )


def executor_from_args(args: argparse.Namespace) -> ExecutorConfig:
    """The :class:`ExecutorConfig` of the flags :func:`add_executor_arguments` added."""
    return ExecutorConfig(kind=args.executor, workers=args.jobs, scheduler=args.scheduler)
