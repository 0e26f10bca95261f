"""Finding and reading taxonomies and label lists: built-in names, YAML files, plain text.

Every command that takes a taxonomy accepts either a path or the name of a built-in (coco, voc,
nuswide, cub). Built-ins live in the repository's ``taxonomies/`` folder, which the package
build maps to ``hspnet_cli._builtin_taxonomies`` so they are found in an installed wheel too.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.safe_yaml import read_yaml_text
from hspnet_cli.taxonomy.core import (
    LabelSpec,
    Taxonomy,
    TaxonomyError,
    _Problems,
    parse_label_entries,
    taxonomy_from_dict,
)
from hspnet_cli.taxonomy.yaml_lines import LineStr, load_json_with_lines, load_yaml_with_lines

_YAML_SUFFIXES = {".yaml", ".yml", ".json"}  # JSON is YAML; it is read by json for exact JSON rules


def _load_document(path: Path) -> object:
    return load_json_with_lines(path) if path.suffix.lower() == ".json" else load_yaml_with_lines(path)


def _builtin_dir() -> Path:
    """Folder holding the built-in taxonomy YAML files (installed package or source checkout)."""
    try:
        root = resources.files("hspnet_cli._builtin_taxonomies")
        path = Path(str(root))
        if path.is_dir():
            return path
    except ModuleNotFoundError:
        pass
    # Running from a source tree that was never installed (e.g. PYTHONPATH=.).
    return Path(__file__).resolve().parents[2] / "taxonomies"


def list_builtin() -> list[str]:
    """Names of the built-in taxonomies, sorted."""
    return sorted(p.stem for p in _builtin_dir().glob("*.yaml"))


def builtin_path(name: str) -> Path | None:
    """Path of built-in ``name``, or None if there is no such built-in."""
    path = _builtin_dir() / f"{name}.yaml"
    return path if path.is_file() else None


def resolve_taxonomy_path(name_or_path: str | Path) -> Path:
    """Turn a built-in name or a file path into a path that exists.

    Raises:
        UserError: Neither a file nor a built-in of that name exists.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    found = builtin_path(str(name_or_path)) if path.suffix == "" and path.parent == Path(".") else None
    if found is not None:
        return found
    if path.exists():
        raise UserError(f"{path}: is not a file; give a taxonomy YAML file or a built-in name")
    raise UserError(
        f"{name_or_path}: no such file, and no built-in taxonomy of that name (built-ins: {', '.join(list_builtin())})"
    )


def load_taxonomy(name_or_path: str | Path) -> Taxonomy:
    """Load and validate a taxonomy from a built-in name or a YAML file.

    Args:
        name_or_path: ``coco``, ``voc``, ``nuswide``, ``cub`` or a path to a taxonomy YAML
            (or the same document as ``.json``).

    Returns:
        The validated taxonomy.

    Raises:
        UserError: The file is missing or invalid; the message names file, line and fix.
    """
    path = resolve_taxonomy_path(name_or_path)
    if path.suffix.lower() not in _YAML_SUFFIXES:
        raise UserError(
            f"{path}: a taxonomy must be a .yaml (or .json) file with 'labels' and 'groups' "
            "(a plain label list can be turned into one with hspnet taxonomy build)"
        )
    return taxonomy_from_dict(_load_document(path), source=str(path))


def read_label_lines(path: Path) -> list[LabelSpec]:
    """Read a plain text label list: one label a line, optionally ``label = synset.n.01``.

    Blank lines and lines starting with ``#`` are skipped.
    """
    text = read_yaml_text(path, "label list")  # the same size bound as every other file hspnet reads
    entries: list[object] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" in line:
            name, _, synset = (part.strip() for part in line.partition("="))
            entries.append(
                {LineStr("name", number): LineStr(name, number), LineStr("wordnet", number): LineStr(synset, number)}
            )
        else:
            entries.append(LineStr(line, number))
    problems = _Problems(str(path))
    if not entries:
        raise TaxonomyError(f"{path}: no labels found; write one label a line")
    specs = parse_label_entries(entries, problems)
    problems.raise_if_any()
    return specs


def load_label_list(name_or_path: str | Path) -> list[LabelSpec]:
    """Labels (with prompts and pinned synsets) from any label source a command accepts.

    Accepts a built-in taxonomy name, a taxonomy YAML, a labels-only YAML (``labels:`` and no
    ``groups``), or a plain text file with one label a line.
    """
    path = resolve_taxonomy_path(name_or_path)
    if path.suffix.lower() in _YAML_SUFFIXES:
        return taxonomy_from_dict(_load_document(path), source=str(path), require_groups=False).labels
    return read_label_lines(path)
