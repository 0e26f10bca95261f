"""Precomputed text-similarity files for the label and group graphs (``model.graph_similarity``).

The published HSPNet code does not build its graphs from the backbone at run time: it reads
cosine similarities of CLIP RN50 text features from ``.npy`` files, labels first, then groups.
Reading such a file reproduces the published graphs exactly (a backbone other than RN50/openai,
another prompt or another text-tower precision would give slightly different ones).

Accepted files:

* ``.npy``: one square float matrix, (C+m) x (C+m) with the taxonomy's C labels in label order
  followed by its m groups in group order (the published layout), or C x C (labels only; the
  group graph is then built from the backbone as usual). A ``.npy`` carries no names, so its
  order is the taxonomy's by assumption: :func:`order_agreement` lets the trainer warn when a
  pretrained backbone's own similarities disagree with it.
* ``.npz``: ``similarity`` as above plus ``names`` (the row names, labels then groups), which
  must equal the taxonomy's names in order; the order is then checked, not assumed.

A cosine-similarity matrix is symmetric with a unit diagonal and entries in [-1, 1]; anything
else is refused with the file name and what is wrong, as is a size that fits neither layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.taxonomy import Taxonomy

_TOL = 1e-3  # float32 files of unit-vector products: diagonals within ~1e-6 of 1 in practice


def _read(path: Path) -> tuple[np.ndarray, list[str] | None]:
    if not path.is_file():
        raise UserError(f"{path}: graph similarity file not found (model.graph_similarity)")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"{path}: not a readable .npy/.npz file ({str(exc).splitlines()[0][:160]})") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            if "similarity" not in data.files:
                raise UserError(
                    f"{path}: an .npz similarity file needs an array 'similarity' "
                    f"(found: {', '.join(data.files) or 'nothing'})"
                )
            names = [str(n) for n in data["names"].tolist()] if "names" in data.files else None
            return np.asarray(data["similarity"]), names
    return np.asarray(data), None


def load_similarity(path: str | Path, taxonomy: Taxonomy) -> tuple[np.ndarray, np.ndarray | None]:
    """Read and check a similarity file against ``taxonomy``.

    Args:
        path: ``.npy`` or ``.npz`` file (see module docstring).
        taxonomy: The run's taxonomy; its label order and group order give the rows' meaning.

    Returns:
        ``(label_sim, group_sim)``: (C, C) and (m, m) float32 matrices; ``group_sim`` is None
        for a labels-only file.

    Raises:
        UserError: Missing or unreadable file, a size that fits neither layout, names that differ
            from the taxonomy's, or a matrix that is not a cosine similarity.
    """
    path = Path(path).expanduser()
    sim, names = _read(path)
    c, m = taxonomy.num_labels, taxonomy.num_groups
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise UserError(f"{path}: expected a square matrix, got shape {tuple(sim.shape)}")
    n = sim.shape[0]
    if n not in (c + m, c):
        raise UserError(
            f"{path}: is {n} x {n}, but taxonomy '{taxonomy.name}' has {c} labels and {m} groups: "
            f"expected {c + m} x {c + m} (labels, then groups) or {c} x {c} (labels only)"
        )
    if not np.issubdtype(sim.dtype, np.floating) and not np.issubdtype(sim.dtype, np.integer):
        raise UserError(f"{path}: holds {sim.dtype} values, not numbers")
    sim = sim.astype(np.float32)
    if names is not None:
        expected = list(taxonomy.label_names) + (list(taxonomy.group_names) if n == c + m else [])
        if len(names) != n:
            raise UserError(f"{path}: 'names' has {len(names)} entries for a {n} x {n} matrix")
        for i, (got, want) in enumerate(zip(names, expected)):
            if got != want:
                kind = "label" if i < c else "group"
                pos = i if i < c else i - c
                raise UserError(
                    f"{path}: row {i} is '{got}' but the taxonomy's {kind} {pos} is '{want}'; "
                    "rows must follow the taxonomy's label order, then its group order"
                )
    if not np.isfinite(sim).all():
        bad = np.argwhere(~np.isfinite(sim))[0]
        raise UserError(f"{path}: entry ({bad[0]}, {bad[1]}) is not a finite number")
    if np.abs(sim - sim.T).max() > _TOL:
        i, j = np.unravel_index(np.abs(sim - sim.T).argmax(), sim.shape)
        raise UserError(
            f"{path}: not symmetric (entry ({i}, {j}) = {sim[i, j]:.4f}, ({j}, {i}) = {sim[j, i]:.4f}); "
            "expected cosine similarities of text features"
        )
    diag = np.diag(sim)
    if np.abs(diag - 1).max() > _TOL or np.abs(sim).max() > 1 + _TOL:
        i = int(np.abs(diag - 1).argmax())
        raise UserError(
            f"{path}: not a cosine-similarity matrix (diagonal entry {i} is {diag[i]:.4f}, largest "
            f"|entry| {np.abs(sim).max():.4f}; expected a unit diagonal and entries in [-1, 1])"
        )
    return sim[:c, :c].copy(), (sim[c:, c:].copy() if n == c + m else None)


def order_agreement(given: np.ndarray, own: np.ndarray) -> float:
    """Pearson correlation of the off-diagonal entries of two similarity matrices.

    Near 1 when a file and a pretrained backbone's own prompt similarities describe the same
    names in the same order (different prompts or backbones still agree closely); near 0 when
    the file's rows are in another order. Meaningless for a random backbone.
    """
    n = given.shape[0]
    if n < 3:
        return 1.0
    off = ~np.eye(n, dtype=bool)
    a, b = given[off].astype(np.float64), own[off].astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return 1.0
    return float(np.corrcoef(a, b)[0, 1])
