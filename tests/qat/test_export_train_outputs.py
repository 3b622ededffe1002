"""qat export and qat train keep to the output policy (hwsim.output): never delete or overwrite what
they did not create, an input least of all; refuse bad output paths with exit 2 before any work."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from hwsim.output import MARKER
from qat.cli import main as qat_main

REPO = Path(__file__).resolve().parents[2]
PACKED = REPO / "hwsim" / "pretrained" / "bundles" / "dorefa_a4w4"
EXPORT = ["--synthetic", "8", "--reference-images", "4", "--device", "cpu"]
TRAIN = ["--epochs", "1", "--synthetic", "8", "--device", "cpu"]
Snapshot = Callable[[Path], dict[str, bytes | None]]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def packed(tmp_path: Path) -> Path:
    """A copy of a bundled model's directory: a bundle with the checkpoint it was exported from."""
    return Path(shutil.copytree(PACKED, tmp_path / "b"))


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = qat_main(argv)
    return code, capsys.readouterr().err


def refused(tmp_path: Path) -> dict[str, Path]:
    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    (unrelated / "keep.txt").write_text("someone's notes\n")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("someone's file\n")
    return {
        "an unrelated directory": unrelated,
        "a file": a_file,
        "below a file": a_file / "sub",
        "under /proc": Path("/proc/qat-output-policy-test"),
    }


def test_export_never_deletes_the_checkpoint_it_exports(
    packed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], snapshot: Snapshot
) -> None:
    ckpt = packed / "checkpoint.pt"
    before = snapshot(tmp_path)
    for out, extra in ((packed, []), (packed, ["--force"]), (tmp_path, ["--force"]), (ckpt, [])):
        code, err = run(["export", str(ckpt), "--out", str(out), *EXPORT, *extra], capsys)
        assert code == 2 and "input" in err and "Traceback" not in err, err
        assert snapshot(tmp_path) == before


def test_export_refuses_bad_outputs_and_replaces_its_own(
    packed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], snapshot: Snapshot
) -> None:
    ckpt = str(packed / "checkpoint.pt")
    for case, out in refused(tmp_path).items():
        before = snapshot(tmp_path)
        code, err = run(["export", ckpt, "--out", str(out), *EXPORT], capsys)
        assert code == 2 and str(out) in err and "Traceback" not in err, (case, err)
        assert snapshot(tmp_path) == before, case
    bundle = tmp_path / "bundle"
    for _ in range(2):  # the second export replaces the first one's bundle
        code, err = run(["export", ckpt, "--out", str(bundle), *EXPORT], capsys)
        assert code == 0, err
    assert sorted(p.name for p in bundle.iterdir()) == sorted(
        [MARKER, "graph.yaml", "reference.npz", "tensors.npz"]
    )
    unrelated = tmp_path / "unrelated"
    code, err = run(["export", ckpt, "--out", str(unrelated), *EXPORT, "--force"], capsys)
    assert code == 0, err
    assert not (unrelated / "keep.txt").exists() and (unrelated / "graph.yaml").is_file()


def test_train_refuses_bad_outputs_and_its_own_inputs(
    packed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], snapshot: Snapshot
) -> None:
    cases = refused(tmp_path)
    for case, out in cases.items():
        before = snapshot(tmp_path)
        code, err = run(["train", *TRAIN, "--out", str(out)], capsys)
        assert code == 2 and str(out) in err and "Traceback" not in err, (case, err)
        assert snapshot(tmp_path) == before, case
    before = snapshot(tmp_path)
    ckpt = packed / "checkpoint.pt"
    code, err = run(["train", *TRAIN, "--init", str(ckpt), "--out", str(packed)], capsys)
    assert code == 2 and "contains the input" in err, err
    assert snapshot(tmp_path) == before


def test_train_turns_a_full_disk_into_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file system refuses the checkpoint (as a full disk does): exit 2 naming the file, no traceback."""
    import errno

    import qat.checkpoint

    def no_space(path: Path, data: bytes) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(qat.checkpoint, "write_atomic", no_space)
    out = tmp_path / "run"
    code, err = run(["train", *TRAIN, "--model", "toynet", "--out", str(out)], capsys)
    assert code == 2 and "Traceback" not in err, err
    assert str(out / "checkpoint.pt") in err and "No space left on device" in err, err
