"""hwsim.execute and hwsim.journal: the same results on every backend, a real Dask cluster, faults, resume.

The cluster is real and local: a ``dask scheduler`` process and two ``dask worker`` processes
(each with its nanny, as a cluster runs them) on 127.0.0.1, started here and stopped by their
process groups at the end whatever happens. Every comparison is ``==`` on report.json bytes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.cli import main
from hwsim.errors import UserError
from hwsim.execute import BACKENDS, ExecutorConfig, run_tasks
from hwsim.journal import decode_result, encode_result, journal_path
from hwsim.pretrained import BUNDLES_DIR

distributed = pytest.importorskip(
    "distributed", reason="the dask extra (pip install -e .[dask]) is not installed"
)

REPO = Path(__file__).resolve().parents[2]
BUNDLE = BUNDLES_DIR / "pact_a4w4"
HW = REPO / "configs" / "hw" / "ws_16x16.yaml"
SWEEP = ["sweep", str(BUNDLE), "--what", "w_bits", "--range", "3..5", "--images", "24", "--no-progress"]
GRID = [
    "simulate",
    str(BUNDLE),
    "--hw",
    str(HW),
    "--grid",
    "rows=8,16",
    "dataflow=ws,os",
    "--images",
    "2",
    "--no-progress",
]
ENV = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
# the cluster's processes take the project's Dask settings, as docs/scale-out.md tells users to
CLUSTER_ENV = {**ENV, "DASK_CONFIG": str(REPO / "configs" / "dask")}


def reports(root: Path) -> dict[str, bytes]:
    """Every report.json under ``root`` (relative path -> bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("report.json"))}


@pytest.fixture(scope="module")
def serial_sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The sweep's report.json, run in this process: what every backend must give."""
    out = tmp_path_factory.mktemp("serial") / "R"
    assert main([*SWEEP, "--executor", "serial", "--report", str(out)]) == 0
    return reports(out)


# ------------------------------------------------------------------------------------------------
# A real cluster on 127.0.0.1
# ------------------------------------------------------------------------------------------------


@dataclass
class Cluster:
    address: str
    processes: list[subprocess.Popen[bytes]]

    def client(self) -> distributed.Client:
        return distributed.Client(self.address, set_as_default=False, timeout=30)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in processes:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, sig)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(p.poll() is None for p in processes):
            time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("dask")
    processes: list[subprocess.Popen[bytes]] = []

    def start(*argv: str) -> None:
        log = (root / f"{len(processes)}.log").open("wb")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "dask", *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=CLUSTER_ENV,
                cwd=root,
                start_new_session=True,  # its own process group: stopped whole, nanny and worker
            )
        )

    scheduler_file = root / "scheduler.json"
    try:
        # every listener on 127.0.0.1: the scheduler's HTTP server too (it takes every interface by default)
        start(
            "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0",
            "--scheduler-file", str(scheduler_file),
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:"), address
        for i in range(2):
            start(
                "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "1",
                "--dashboard-address", "127.0.0.1:0", "--name", f"w{i}", "--death-timeout", "60",
            )  # fmt: skip
        found = Cluster(address, processes)
        with found.client() as client:
            client.wait_for_workers(2, timeout=60)
        yield found
    finally:
        _stop(processes)


def _inet_connections(pids: list[int]) -> list[tuple[str, str]]:
    """(local address, remote address) of every TCP/UDP socket of these processes and their children
    (a ``dask scheduler`` listens on every interface unless told otherwise: the check catches it)."""
    import psutil

    found = []
    for pid in pids:
        try:
            tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in tree:
            try:
                for c in proc.net_connections(kind="inet"):
                    found.append((c.laddr.ip, c.raddr.ip if c.raddr else ""))
            except psutil.NoSuchProcess:
                continue
    return found


def test_a_sweep_and_a_grid_on_the_cluster_equal_the_serial_run(
    cluster: Cluster, serial_sweep: dict[str, bytes], tmp_path: Path
) -> None:
    out = tmp_path / "R"
    assert main([*SWEEP, "--executor", "dask", "--scheduler", cluster.address, "--report", str(out)]) == 0
    assert reports(out) == serial_sweep
    # the grid: the same design-space report (the same path, so that the paths in it agree too)
    grid = tmp_path / "G"
    assert main([*GRID, "--executor", "serial", "--report", str(grid)]) == 0
    expected = reports(grid)
    assert len(expected) == 5  # the design space and its 4 configurations
    assert main([*GRID, "--executor", "dask", "--scheduler", cluster.address, "--report", str(grid)]) == 0
    assert reports(grid) == expected
    # the workers run without the allocator setting that slows the emulator (configs/dask/hwsim.yaml)
    with cluster.client() as client:
        assert set(client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values()) == {None}
    # everything the cluster's processes opened is on the loopback interface
    connections = _inet_connections([p.pid for p in cluster.processes])
    assert connections, "no sockets seen: the check saw nothing"
    assert all(local == "127.0.0.1" and remote in ("", "127.0.0.1") for local, remote in connections), (
        connections
    )


def test_the_demo_on_the_cluster_equals_the_serial_demo(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hwsim.bundle.synthetic import tiny_bundle

    monkeypatch.delenv("CIFAR10_DIR", raising=False)  # the tiny bundle's inputs are not CIFAR-10 images

    tiny_bundle(tmp_path / "bundles" / "tiny", reference_images=4)
    out = tmp_path / "demo"
    argv = ["demo", "--bundles", str(tmp_path / "bundles"), "--out", str(out), "--sweep-images", "4"]
    argv += ["--acc-widths", "8,12", "--precision-widths", "2,3", "--precision-sweep", "all", "--no-progress"]
    assert main([*argv, "--executor", "serial"]) == 0
    expected = {k: v for k, v in reports(out).items() if k != "index.json"}  # the index holds timings
    assert list(expected) == ["tiny/report.json"]
    assert main([*argv, "--executor", "dask", "--scheduler", cluster.address]) == 0
    assert {k: v for k, v in reports(out).items() if k != "index.json"} == expected
    assert (out / "tiny" / "sensitivity_w_bits.png").is_file()  # the sweeps ran as tasks too


def test_a_worker_killed_mid_task_has_its_task_run_again(
    cluster: Cluster, serial_sweep: dict[str, bytes], tmp_path: Path
) -> None:
    out = tmp_path / "R"
    argv = [*SWEEP, "--executor", "dask", "--scheduler", cluster.address, "--report", str(out)]
    with cluster.client() as client:
        client.wait_for_workers(2, timeout=60)
        proc = subprocess.Popen(
            [sys.executable, "-m", "hwsim.cli", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=ENV,
        )
        try:
            victim, task = None, None
            deadline = time.monotonic() + 120
            while victim is None and time.monotonic() < deadline and proc.poll() is None:
                for worker, keys in client.processing().items():
                    # a point of the sweep (hwsim-RUN-INDEX), not the shared data (hwsim-RUN-shared)
                    ours = [
                        k for k in keys if str(k).startswith("hwsim-") and str(k).rsplit("-", 1)[1].isdigit()
                    ]
                    if ours:
                        victim, task = worker, ours[0]
                        break
                time.sleep(0.02)
            assert victim is not None, "no task of the sweep was seen running on a worker"
            pid = client.run(os.getpid, workers=[victim])[victim]
            os.kill(pid, signal.SIGKILL)  # the worker process (its nanny starts a new one)
            _, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err.decode()
    assert reports(out) == serial_sweep, f"after killing {victim} running {task}"
    with cluster.client() as client:  # the nanny brought the worker back
        client.wait_for_workers(2, timeout=60)


# ------------------------------------------------------------------------------------------------
# Interrupt and resume
# ------------------------------------------------------------------------------------------------


def test_an_interrupted_sweep_resumes_with_only_the_rest(
    cluster: Cluster, serial_sweep: dict[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "R"
    journal = journal_path(out)
    argv = [*SWEEP, "--report", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hwsim.cli", *argv, "--executor", "serial"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and len(list(journal.glob("task-*.npz"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()
    kept = len(list(journal.glob("task-*.npz")))
    assert kept >= 3 and "--resume runs only the rest" in err.decode()
    assert not out.exists()
    # another run's journal is refused by its fingerprint (another --range)
    other = [*argv[:5], "3..6", *argv[6:], "--resume"]
    assert main(other) == 2
    assert "of another run" in capsys.readouterr().err
    # resumed on the cluster: the kept points are not run again; the report is the serial one
    assert main([*argv, "--executor", "dask", "--scheduler", cluster.address, "--resume"]) == 0
    taken = capsys.readouterr().err
    assert f"--resume: {kept} of " in taken, taken
    assert reports(out) == serial_sweep
    assert not journal.exists()


def test_a_local_pool_gives_the_serial_result(serial_sweep: dict[str, bytes], tmp_path: Path) -> None:
    out = tmp_path / "R"
    assert main([*SWEEP, "--executor", "local", "--jobs", "2", "--report", str(out)]) == 0
    assert reports(out) == serial_sweep


DIES_HOLDING_THE_BAR_LOCK = """
import os, signal
from tqdm import tqdm
from hwsim.errors import UserError
from hwsim.execute import ExecutorConfig, run_tasks

def task(shared, i):
    if i == 0:  # stopped inside a tqdm() call: every tqdm(), even a disabled one, takes this lock
        tqdm.get_lock().acquire()
        os.kill(os.getpid(), signal.SIGKILL)
    return i

try:
    run_tasks(task, None, [0, 1, 2, 3], ExecutorConfig(kind="local", workers=2), progress=True)
except UserError as err:
    print("error:", err)
tqdm(total=1).close()  # and the command's next bar
print("returned")
"""


def test_a_worker_killed_inside_tqdm_leaves_the_command_free_to_stop() -> None:
    # Before each worker took a lock of its own, the command's bar waited forever for the lock that
    # the dead worker held (a semaphore shared across fork): SIGTERM to a 64-configuration
    # `hwsim simulate --grid` after its first task hung 3 runs of 40 (none of 120 since).
    run = subprocess.run(
        [sys.executable, "-c", DIES_HOLDING_THE_BAR_LOCK], capture_output=True, text=True, timeout=60, env=ENV
    )
    assert run.returncode == 0, run.stderr
    assert "error: a worker process of the local pool died" in run.stdout, run.stdout
    assert run.stdout.rstrip().endswith("returned"), run.stdout


def test_a_journal_path_that_is_not_a_journal_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "R"
    journal_path(out).mkdir()
    (journal_path(out) / "mine.txt").write_text("not the tool's")
    assert main([*SWEEP, "--executor", "serial", "--report", str(out)]) == 2
    assert "not a journal this tool wrote" in capsys.readouterr().err
    assert (journal_path(out) / "mine.txt").read_text() == "not the tool's" and not out.exists()


def test_a_damaged_task_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "R"
    argv = [*SWEEP[:5], "4", *SWEEP[6:], "--executor", "serial", "--report", str(out)]
    # a journal of this very run (the fingerprint matches) holding a file that is not a task file
    from hwsim.bundle import load_bundle
    from hwsim.journal import JOURNAL
    from hwsim.output import MARKER
    from hwsim.sweep import sweep_fingerprint

    bundle = load_bundle(BUNDLE)
    codes = bundle.reference.input_codes[:24]
    journal = journal_path(out)
    journal.mkdir()
    (journal / MARKER).write_text(JOURNAL.name + "\n")
    fingerprint = sweep_fingerprint(bundle, "w_bits", [4], codes, "wrap", None)
    (journal / "run.json").write_text(json.dumps({"format": 1, "what": "x", "fingerprint": fingerprint}))
    (journal / "task-0123.npz").write_bytes(b"PK\x03\x04 damaged")
    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "task-0123.npz: not a task file" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------------
# The executor itself
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(set(BACKENDS) - {"dask"}))
def test_every_backend_returns_the_results_in_task_order(kind: str) -> None:
    tasks = list(range(1, 13))  # divmod: a function every worker can import (a task is fn(shared, task))
    got = run_tasks(divmod, 100, tasks, ExecutorConfig(kind=kind, workers=2), cost=lambda t: t % 5)
    assert got == [divmod(100, t) for t in tasks]


def test_the_dask_backend_returns_the_results_in_task_order(cluster: Cluster) -> None:
    tasks = list(range(1, 13))
    got = run_tasks(
        divmod, 100, tasks, ExecutorConfig(kind="dask", scheduler=cluster.address), cost=lambda t: t % 5
    )
    assert got == [divmod(100, t) for t in tasks]


def test_the_local_cluster_runs_the_tasks_on_the_loopback_only() -> None:
    from hwsim.execute import dask_client

    config = ExecutorConfig(kind="dask", workers=2)
    assert run_tasks(divmod, 100, list(range(1, 5)), config) == [divmod(100, t) for t in range(1, 5)]
    with dask_client(config) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        connections = _inet_connections([os.getpid()])
    assert connections and all(a == "127.0.0.1" and b in ("", "127.0.0.1") for a, b in connections), (
        connections
    )


def test_bad_executor_settings_are_refused() -> None:
    with pytest.raises(UserError, match="--executor 'ray' is not one of serial, local, dask"):
        ExecutorConfig(kind="ray")
    with pytest.raises(UserError, match="for --executor dask only"):
        ExecutorConfig(kind="local", scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(UserError, match="--jobs"):
        ExecutorConfig(workers=0)


def test_an_unreachable_scheduler_is_an_error_in_bounded_time(capsys: pytest.CaptureFixture[str]) -> None:
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        start = time.monotonic()
        status = main(
            [*SWEEP, "--executor", "dask", "--scheduler", "tcp://127.0.0.1:9", "--report", "/tmp/x-never"]
        )
        elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert status == 2 and "no Dask scheduler answered within 2s" in err, err
    assert elapsed < 30
    assert main([*SWEEP, "--executor", "dask", "--scheduler", "nonsense::", "--report", "/tmp/x-never"]) == 2
    assert "not a scheduler address" in capsys.readouterr().err
    assert not Path("/tmp/x-never").exists()


NO_DASK = """
import importlib, pkgutil, sys
sys.modules["dask"] = None          # as if the extra were not installed
sys.modules["distributed"] = None
import hwsim
for m in pkgutil.walk_packages(hwsim.__path__, "hwsim."):
    importlib.import_module(m.name)
from hwsim.cli import main
status = main(sys.argv[1:])
print("status", status)
"""


@pytest.mark.parametrize("executor", ["local", "dask"])
def test_hwsim_runs_without_dask_and_says_how_to_get_it(executor: str, tmp_path: Path) -> None:
    argv = [
        *SWEEP[:5],
        "4",
        "--images",
        "4",
        "--no-progress",
        "--executor",
        executor,
        "--report",
        str(tmp_path / "R"),
    ]
    proc = subprocess.run(
        [sys.executable, "-c", NO_DASK, *argv], capture_output=True, text=True, env=ENV, timeout=300
    )
    if executor == "local":
        assert "status 0" in proc.stdout, proc.stderr
    else:
        assert "status 2" in proc.stdout and "pip install -e '.[dask]'" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and not (tmp_path / "R").exists()


# ------------------------------------------------------------------------------------------------
# The journal's encoding of results
# ------------------------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**62), 2**62)
    | st.floats(allow_nan=True)
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.integers(-100, 100).map(np.int64)
    | st.floats(width=32).map(np.float32)
)
arrays = st.lists(st.integers(-(2**31), 2**31), max_size=6).map(lambda v: np.array(v, dtype=np.int64))
plain = st.recursive(
    scalars | arrays,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=4) | st.integers(0, 9), inner, max_size=4)
    ),
    max_leaves=20,
)


def _same(a: object, b: object) -> bool:
    """Equal with the same types all the way down (NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)  # type: ignore[union-attr]
    if isinstance(a, (float, np.floating)):
        return (math.isnan(a) and math.isnan(b)) or a == b  # type: ignore[arg-type]
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)  # type: ignore[index]
    return a == b


@settings(max_examples=200, deadline=None)
@given(task=plain, result=plain)
def test_a_result_comes_back_from_the_journal_as_it_went_in(task: object, result: object) -> None:
    back_task, back = decode_result(encode_result(task, result))
    assert _same(back_task, task) and _same(back, result)


def test_the_journal_holds_data_never_code() -> None:
    with pytest.raises(TypeError, match="expected plain data"):
        encode_result(1, {"x": object()})
    with pytest.raises(TypeError, match="object array"):
        encode_result(1, np.array([object()]))
