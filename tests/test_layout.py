"""The package's layers: imports go one way, each heavy library lives in one subpackage, and the
command line starts without numpy, zarr, dask or scikit-learn."""

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "streamproc"

# each heavy library may be imported (at any depth of a function) only inside its subpackage
HOMES = {"zarr": "store", "dask": "pipeline", "distributed": "pipeline", "datashader": "view",
         "umap": "learn", "openTSNE": "learn", "spacy": "view", "torch": "io",
         "sentence_transformers": "io", "starlette": "view", "uvicorn": "view", "fastapi": "view"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, *, top_level_only: bool):
    """(imported module, line) for every import in the module; relative imports made absolute."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module, node.lineno
            for alias in node.names:  # ``from . import kmeans`` imports a module
                yield f"{module}.{alias.name}", node.lineno


def test_no_import_cycle_at_module_level():
    modules = _modules()
    graph = {name: sorted({m for m, _ in _imports(name, path, top_level_only=True) if m in modules and m != name})
             for name, path in modules.items()}
    # a package's __init__ importing its own submodules is not a cycle worth the name; none of ours does
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node)


def test_each_heavy_library_is_imported_in_one_subpackage():
    wrong = []
    for name, path in _modules().items():
        layer = name.split(".")[1] if "." in name else ""
        for module, line in _imports(name, path, top_level_only=False):
            home = HOMES.get(module.split(".")[0])
            if home and layer != home:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module} (belongs in streamproc/{home}/)")
    assert not wrong, "\n".join(wrong)


def test_learn_is_numpy_and_scikit_learn_only():
    """learn/ computes on arrays: numpy, scipy, scikit-learn, and the two sample embeddings that take and
    give numpy arrays (umap-learn, openTSNE, in learn/embedding.py only)."""
    allowed = {"numpy", "scipy", "sklearn", "threadpoolctl", "streamproc", "umap", "openTSNE"}
    stdlib = set(sys.stdlib_module_names)
    wrong = []
    for name, path in _modules().items():
        if name.startswith("streamproc.learn"):
            for module, line in _imports(name, path, top_level_only=False):
                root = module.split(".")[0]
                if root not in allowed and root not in stdlib:
                    wrong.append(f"{name}:{line} imports {module}")
                if root == "streamproc" and module.split(".")[1:2] not in (["learn"], ["errors"], ["options"],
                                                                           ["__version__"], []):
                    wrong.append(f"{name}:{line} imports {module} (learn/ depends on nothing above it)")
    assert not wrong, "\n".join(wrong)


def test_cli_help_and_import_load_no_heavy_library():
    code = ("import sys, json, streamproc\n"
            "from streamproc.cli.main import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "for command in list(main.commands):\n"
            "    try:\n        main([command, '--help'])\n    except SystemExit:\n        pass\n"
            "heavy = [m for m in ('numpy', 'zarr', 'dask', 'sklearn', 'pandas', 'pyarrow', 'scipy') if m in sys.modules]\n"
            "print(json.dumps(heavy), file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == []
    assert "ingest" in proc.stdout and "classify" in proc.stdout
