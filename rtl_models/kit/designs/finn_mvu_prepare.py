"""Build-time sources of FINN's MVU for Verilator: add_multi.sv with one block moved, the rest as vendored.

Verilator (4.212 on) rejects a constant function declared inside a generate block (IEEE 1800
13.4.3), a hard error that no -Wno- switch lifts; FINN's add_multi.sv declares init_leaf_loads()
inside ``genTree``. A copy in the build directory has that typedef and function moved verbatim to
module scope (they use only the module parameter N); rtl_models/third_party/finn_mvu stays unmodified.
"""

from pathlib import Path

BLOCK_START = "\t\t// Compute the count of decendents for all nodes in the reduction trees.\n"
BLOCK_END = "\t\tendfunction : init_leaf_loads\n"
ANCHOR = "\tuwire [SUM_WIDTH-1:0]  sum0;\n"


def sources(files: list[Path], build_dir: Path) -> list[Path]:
    return [hoisted(f, build_dir) if f.name == "add_multi.sv" else f for f in files]


def hoisted(src: Path, build_dir: Path) -> Path:
    text = src.read_text(encoding="utf-8")
    a, b = text.index(BLOCK_START), text.index(BLOCK_END) + len(BLOCK_END)
    block = "".join(line[1:] if line.startswith("\t") else line for line in text[a:b].splitlines(True))
    dst = build_dir / "prepared" / "add_multi.sv"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text((text[:a] + text[b:]).replace(ANCHOR, block + "\n" + ANCHOR), encoding="utf-8")
    return dst
