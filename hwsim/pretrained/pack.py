"""Copy an exported bundle into the package as a bundled model, with a compact reference.npz.

Place in the flow: ``qat export`` -> this module -> ``hwsim/pretrained/bundles/<name>/`` ->
``hwsim.pretrained.list_bundles`` -> ``hwsim demo``. Run it as::

    python -m hwsim.pretrained.pack runs/dorefa_a4w4.bundle dorefa_a4w4 \\
        --checkpoint runs/dorefa_a4w4/best.pt --reference-images 32

What changes and what does not: graph.yaml and tensors.npz keep every value (tensors.npz is
stored compressed); reference.npz keeps the first ``reference_images`` images of the reference
batch with every layer's codes, and ``eval_predictions``/``eval_labels`` whole; a ``float/<tensor>``
array is dropped when it equals ``codes * scale`` in float32 exactly (so nothing is lost; hwsim
compare computes the same values from the codes) and kept otherwise. graph.yaml's
``reference.images`` is set to the images kept and, with ``--checkpoint``, the checkpoint's path
to ``checkpoint.pt`` beside it, and the run's ``metrics.csv`` (found beside the checkpoint) is
copied too (the learning curves of docs/ are drawn from it). The copy is loaded back and checked
value for value against the source before it replaces anything. Then add the model's entry to
``MANIFEST.yaml`` (the command prints one to start from).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import yaml

from hwsim.bundle import GRAPH_FILE, REFERENCE_FILE, TENSORS_FILE, Bundle, load_bundle
from hwsim.errors import UserError
from hwsim.output import claim, publish_directory, register_kind, safe_name
from hwsim.pretrained import BUNDLES_DIR, MANIFEST_FILE
from hwsim.yaml_io import read_yaml

DEFAULT_REFERENCE_IMAGES = 32
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.csv"  # the training run's per-epoch metrics (qat train), beside its checkpoint


def _looks_packed(path: Path) -> bool:
    """A bundled model written before output markers: graph.yaml and only the files packed here."""
    names = {p.name for p in path.iterdir()}
    return GRAPH_FILE in names and names <= {
        GRAPH_FILE,
        TENSORS_FILE,
        REFERENCE_FILE,
        CHECKPOINT_FILE,
        METRICS_FILE,
    }


PACKED = register_kind("bundled model", recognize=_looks_packed)


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _savez_compressed(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path.write_bytes(buf.getvalue())


def compact_reference(bundle: Bundle, raw: dict[str, np.ndarray], images: int) -> dict[str, np.ndarray]:
    """The first ``images`` of reference.npz's arrays; ``float/`` arrays dropped where codes * "
    "scale equal them."""
    out: dict[str, np.ndarray] = {}
    for key, arr in raw.items():
        prefix, _, tensor = key.partition("/")
        if key in ("input_codes", "labels") or prefix == "codes":
            out[key] = arr[:images]
        elif prefix == "float":
            kept = arr[:images]
            codes = raw.get(f"codes/{tensor}")
            scale = bundle.tensors[tensor].scale
            if codes is not None and scale is not None:
                again = codes[:images].astype(np.float32) * np.float32(scale)
                if again.dtype == kept.dtype and np.array_equal(again, kept):
                    continue
            out[key] = kept
        else:  # eval_predictions, eval_labels, device: whole
            out[key] = arr
    return out


def _graph_text(source: Path, images: int, checkpoint: bool) -> str:
    graph = read_yaml(source / GRAPH_FILE)
    if isinstance(graph.get("reference"), dict):
        graph["reference"]["images"] = images
    quant = graph.get("quantization")
    if checkpoint and isinstance(quant, dict) and isinstance(quant.get("checkpoint"), dict):
        quant["checkpoint"]["path"] = CHECKPOINT_FILE
    return yaml.safe_dump(graph, sort_keys=False, default_flow_style=None, width=110)


def _check_copy(source: Bundle, copy: Bundle, images: int) -> None:
    """Every value of the copy equals the source's (first ``images`` of the reference batch)."""
    problems: list[str] = []
    if set(source.consts) != set(copy.consts) or not all(
        np.array_equal(source.consts[k], copy.consts[k]) for k in source.consts
    ):
        problems.append("tensors.npz differs")
    a, b = source.reference, copy.reference
    assert a is not None and b is not None
    if not np.array_equal(a.input_codes[:images], b.input_codes) or not np.array_equal(
        a.labels[:images], b.labels
    ):
        problems.append("input_codes or labels differ")
    if set(a.codes) != set(b.codes) or not all(
        np.array_equal(a.codes[k][:images], b.codes[k]) for k in a.codes
    ):
        problems.append("codes/ differ")
    for k, v in a.floats.items():
        expected = v[:images]
        got = b.floats.get(k)
        if got is None:
            got = b.codes[k].astype(np.float32) * np.float32(copy.tensors[k].scale)
        if not np.array_equal(expected, got):
            problems.append(f"float/{k} differs")
    if (a.eval_predictions is None) != (b.eval_predictions is None) or (
        a.eval_predictions is not None and not np.array_equal(a.eval_predictions, b.eval_predictions)
    ):
        problems.append("eval_predictions differ")
    if problems:
        raise RuntimeError(f"the packed copy of {source.path} is not faithful: {'; '.join(problems)}")


def pack_bundle(
    source: str | os.PathLike[str],
    name: str,
    directory: str | os.PathLike[str] = BUNDLES_DIR,
    reference_images: int = DEFAULT_REFERENCE_IMAGES,
    checkpoint: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``directory/name/`` from the bundle ``source`` (see the module docstring); returns its path."""
    src = Path(source)
    safe_name(name, "the bundled model's name")
    if reference_images < 1:
        raise UserError(f"--reference-images {reference_images}: expected at least 1")
    bundle = load_bundle(src)
    if bundle.reference is None:
        raise UserError(
            f"{src}: no {REFERENCE_FILE}; a bundled model needs its reference (re-export with qat export)"
        )
    images = min(reference_images, bundle.reference.images)
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and not ckpt.is_file():
        raise UserError(f"--checkpoint {ckpt}: no such file; pass the best.pt or checkpoint.pt of qat train")
    dest = claim(Path(directory) / name, PACKED, inputs=(src, ckpt))
    with publish_directory(dest, PACKED) as tmp:
        (tmp / GRAPH_FILE).write_text(_graph_text(src, images, ckpt is not None), encoding="utf-8")
        _savez_compressed(tmp / TENSORS_FILE, _npz_arrays(src / TENSORS_FILE))
        _savez_compressed(
            tmp / REFERENCE_FILE, compact_reference(bundle, _npz_arrays(src / REFERENCE_FILE), images)
        )
        if ckpt is not None:
            shutil.copyfile(ckpt, tmp / CHECKPOINT_FILE)
            if (ckpt.parent / METRICS_FILE).is_file():
                shutil.copyfile(ckpt.parent / METRICS_FILE, tmp / METRICS_FILE)
        _check_copy(bundle, load_bundle(tmp), images)
    return dest.path


def manifest_stub(name: str, path: Path) -> str:
    """A MANIFEST.yaml entry for the packed bundle, filled with what the bundle itself records."""
    bundle = load_bundle(path)
    default = bundle.meta.quantization.get("config", {}).get("default", {})
    weight, act = default.get("weight", {}), default.get("activation", {})
    ref = bundle.reference
    top1 = None
    if ref is not None and ref.eval_predictions is not None and ref.eval_labels is not None:
        top1 = round(float(np.mean(ref.eval_predictions == ref.eval_labels)), 4)
    entry = {
        name: {
            "title": name,
            "method": weight.get("method", "?"),
            "w_bits": weight.get("bits", "?"),
            "a_bits": act.get("bits", "?"),
            "config": "configs/quant/<config>.yaml",
            "checkpoint": CHECKPOINT_FILE if (path / CHECKPOINT_FILE).is_file() else None,
            "commands": ["qat train ...", "qat export ...", f"python -m hwsim.pretrained.pack ... {name}"],
            "top1_pytorch": top1,
            "eval_set": f"CIFAR-10 test split, {ref.eval_labels.size} images"
            if ref is not None and ref.eval_labels is not None
            else None,
        }
    }
    return yaml.safe_dump(entry, sort_keys=False, default_flow_style=None, width=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hwsim.pretrained.pack",
        description="copy an exported bundle into hwsim/pretrained/bundles/ with a compact reference.npz",
    )
    parser.add_argument("bundle", type=Path, help="bundle directory written by qat export")
    parser.add_argument("name", help="directory name under the bundles directory, e.g. dorefa_a4w4")
    parser.add_argument(
        "--reference-images",
        type=int,
        default=DEFAULT_REFERENCE_IMAGES,
        help=f"images of the reference batch to keep (default {DEFAULT_REFERENCE_IMAGES})",
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="qat train checkpoint to ship beside it"
    )
    parser.add_argument(
        "--directory", type=Path, default=BUNDLES_DIR, help="bundles directory (default: the package's)"
    )
    args = parser.parse_args(argv)
    try:
        dest = pack_bundle(args.bundle, args.name, args.directory, args.reference_images, args.checkpoint)
    except UserError as err:
        print(f"hwsim.pretrained.pack: error: {err}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in dest.iterdir())
    with zipfile.ZipFile(dest / REFERENCE_FILE) as z:
        kept = len(z.namelist())
    print(f"{dest} ({size / 1e6:.2f} MB; reference.npz holds {kept} arrays)")
    print(f"add this entry under 'models:' in {args.directory / MANIFEST_FILE} and complete it:\n")
    print(manifest_stub(args.name, dest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
