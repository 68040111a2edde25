#!/usr/bin/env python3
"""Checks that the crate's modules are layered: each top-level module of src/ uses only the
modules of lower layers (and itself). Prints the import graph; exits 1 on any upward or sideways
use, naming the file and line. Comments and doc comments are ignored (they may mention anything).

Run: python3 .ci/layers.py
"""
import pathlib
import re
import sys

# Lowest first. A module may use the modules of strictly lower layers.
LAYERS = [
    ["sync", "drop_chain"],
    ["world"],
    ["error", "names", "stats"],
    ["raw"],
    ["types"],
    ["graph"],
    ["methods"],
    ["dispatch"],
    ["engine"],
    ["cache"],
    ["persist"],
]
LAYER = {module: i for i, modules in enumerate(LAYERS) for module in modules}

src = pathlib.Path(__file__).resolve().parent.parent / "src"
uses = re.compile(r"\bcrate::(\w+)")
edges = {}
problems = []
for path in sorted(src.rglob("*.rs")):
    rel = path.relative_to(src)
    if rel.parts == ("lib.rs",):
        continue  # the root re-exports from every layer
    module = rel.parts[0].removesuffix(".rs")
    if module not in LAYER:
        problems.append(f"{rel}: module `{module}` is not in any layer of .ci/layers.py")
        continue
    for number, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split("//", 1)[0]
        for used in uses.findall(code):
            if used == module or used in ("semantics",):
                continue
            if used not in LAYER:
                problems.append(f"{rel}:{number}: uses unknown module `crate::{used}`")
                continue
            edges.setdefault(module, set()).add(used)
            if LAYER[used] >= LAYER[module]:
                problems.append(
                    f"{rel}:{number}: `{module}` (layer {LAYER[module] + 1}) uses "
                    f"`crate::{used}` (layer {LAYER[used] + 1}): only lower layers may be used"
                )

print("import graph of src/ (module -> modules it uses), lowest layer first:")
for modules in LAYERS:
    for module in modules:
        print(f"  {module:9} -> {', '.join(sorted(edges.get(module, ()), key=LAYER.get)) or '-'}")
if problems:
    print("\nlayering violations:", *problems, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print("no cycle: every module uses only lower layers")
