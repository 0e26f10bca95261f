"""The package's layers, checked over its import graph (every import, also those inside functions).

Rooms are the sub-packages of ``hspnet_cli`` (and the few modules beside ``cli.py``). Data flows
one way: a room imports only rooms on lower floors. Using a model never imports training: only
``train``, ``commands`` and ``demo`` may import ``hspnet_cli.train``. Names that start with an
underscore stay inside their room.
"""

from __future__ import annotations

import ast
from pathlib import Path

import hspnet_cli

PACKAGE = Path(hspnet_cli.__file__).resolve().parent

# Floor of each room; a room may import rooms on strictly lower floors (and itself).
FLOORS = {
    "core": 0,
    "config": 1,
    "taxonomy": 2,
    "tagsfile": 2,
    "losses": 2,
    "data": 3,
    "model": 4,
    "sources": 3,
    "scoring": 5,
    "evaluation": 6,
    "train": 7,
    "tagging": 7,
    "index": 8,
    "labeltools": 8,
    "cluster": 8,
    "selection": 9,
    "annotate": 9,
    "dedup": 9,
    "audit": 9,
    "demo": 10,
    "commands": 11,
    "cli": 12,
    "__main__": 13,
}
MAY_IMPORT_TRAIN = {"train", "commands", "demo"}
LOOSE_MODULES_ALLOWED = {"__init__", "__main__", "cli", "config"}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports() -> list[tuple[str, str, str, list[str]]]:
    """(importing file, importing room, imported module, imported names) for every hspnet import."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("hspnet_cli"):
                target = node.module or ""
                names = [a.name for a in node.names]
                if target == "hspnet_cli":  # from hspnet_cli import x: x is a room unless it is __version__
                    for name in names:
                        if name != "__version__":
                            found.append((str(rel), _room(module), f"hspnet_cli.{name}", []))
                    continue
                found.append((str(rel), _room(module), target, names))
            elif isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{rel}: relative import; import hspnet_cli modules by their full name")
            elif isinstance(node, ast.Import):
                found += [(str(rel), _room(module), a.name, []) for a in node.names if a.name.startswith("hspnet_cli.")]
    return found


def test_every_room_has_a_floor() -> None:
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    rooms |= {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    rooms -= {"_builtin_taxonomies"}
    assert rooms <= set(FLOORS), f"rooms without a floor in this test: {sorted(rooms - set(FLOORS))}"


def test_imports_run_down_the_floors_only() -> None:
    upward = []
    for path, room, target, _ in _imports():
        other = _room(target)
        if other != room and other in FLOORS and FLOORS[other] >= FLOORS[room]:
            upward.append(f"{path} ({room}, floor {FLOORS[room]}) imports {target} (floor {FLOORS[other]})")
    assert not upward, "imports that run up or sideways:\n" + "\n".join(upward)


def test_only_train_commands_and_demo_import_train() -> None:
    bad = [
        f"{path} imports {target}"
        for path, room, target, _ in _imports()
        if _room(target) == "train" and room not in MAY_IMPORT_TRAIN
    ]
    assert not bad, "using a model must never import training:\n" + "\n".join(bad)


def test_no_private_name_crosses_rooms() -> None:
    bad = [
        f"{path} imports {name} from {target}"
        for path, room, target, names in _imports()
        for name in names
        if name.startswith("_") and not name.startswith("__") and _room(target) != room
    ]
    assert not bad, "private names used outside their room:\n" + "\n".join(bad)


def test_at_most_two_loose_modules_beside_cli_and_config() -> None:
    loose = {p.stem for p in PACKAGE.glob("*.py")}
    assert loose <= LOOSE_MODULES_ALLOWED, f"loose modules at the package root: {sorted(loose - LOOSE_MODULES_ALLOWED)}"


def test_every_room_declares_its_public_names() -> None:
    missing = []
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        if init.parent.name in ("commands", "_builtin_taxonomies"):
            continue  # Typer command modules are registered by cli.py, not imported by name
        if "__all__" not in init.read_text(encoding="utf-8"):
            missing.append(init.parent.name)
        else:
            module = __import__(f"hspnet_cli.{init.parent.name}", fromlist=["__all__"])
            for name in module.__all__:
                assert getattr(module, name) is not None, f"hspnet_cli.{init.parent.name}.{name}"
    assert not missing, f"rooms whose __init__ has no __all__: {missing}"
