"""Taxonomies from k-means over label features (the paper's "HSPNet-cluster").

When a dataset has no hierarchy, labels can be grouped by the similarity of their CLIP text
features. Measured on the real RN50 text features of the VOC labels against the published
4-group hierarchy (adjusted Rand index):

* plain Euclidean k-means (scikit-learn, 50 restarts): 0.51 to 0.61 depending on the seed,
  because Lloyd's algorithm stops in different local optima;
* spherical k-means (cosine assignment) with k-means++ restarts, the best results refined by
  single-point moves ("first variation"): 0.78 centred, 0.80 raw, for every seed tried.

So the optimiser matters most. Features are centred by default (mean subtracted, rows
re-normalised): CLIP text features of "a photo of a <label>." share a large common component
(VOC pairwise cosine >= 0.71, mean 0.82), and removing the common direction is the standard
remedy for such anisotropic embeddings ("all-but-the-top", Mu & Viswanath 2018). On VOC the two
differ by one label (centred splits bicycle/motorbike from the other vehicles; raw splits the
household group); ``center=False`` keeps the raw features.

The stored group features are the normalised means of each group's *original* (uncentred)
label features, so they live in the text-embedding space the model compares against.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.taxonomy.core import LabelSpec, Taxonomy

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "a photo of a {}."


def default_k(num_labels: int) -> int:
    """About sqrt(num_labels) groups, at least 2 (COCO 80 -> 9, VOC 20 -> 4)."""
    return max(2, int(round(num_labels**0.5)))


def load_features(path: str | Path, num_labels: int) -> np.ndarray:
    """Read a ``.npy`` matrix of label features, one row per label in label order.

    Raises:
        UserError: Missing file, wrong shape, non-finite values or all-zero rows.
    """
    path = Path(path)
    try:
        feats = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (ValueError, OSError) as exc:
        raise UserError(f"{path}: not a .npy array file ({exc})") from None
    if feats.ndim != 2 or feats.shape[0] != num_labels:
        raise UserError(
            f"{path}: expected a 2-D array with one row per label ({num_labels} rows), got shape {feats.shape}"
        )
    feats = feats.astype(np.float64)
    if not np.isfinite(feats).all():
        row = int(np.argwhere(~np.isfinite(feats))[0, 0])
        raise UserError(f"{path}: row {row} holds NaN or infinite values")
    norms = np.linalg.norm(feats, axis=1)
    if (norms == 0).any():
        raise UserError(f"{path}: row {int(np.argmin(norms))} is all zeros; every label needs a feature")
    return feats


def spherical_kmeans(
    feats: np.ndarray, k: int, seed: int = 0, n_init: int = 100, max_iter: int = 100, n_refine: int = 10
) -> tuple[np.ndarray, np.ndarray, float]:
    """Cluster unit vectors by cosine similarity.

    Args:
        feats: (n, d) L2-normalised rows.
        k: Number of clusters, 1 <= k <= n.
        seed: Seeds the k-means++ initialisations; same seed, same result.
        n_init: k-means++ restarts of Lloyd's algorithm.
        max_iter: Lloyd iterations per restart.
        n_refine: The best distinct Lloyd results refined by single-point moves; the one with
            the highest total cosine to its centre wins.

    Returns:
        (assign (n,) int64 cluster ids renumbered in order of first appearance,
         centres (k, d) unit vectors in the same numbering, objective).
    """
    rng = np.random.default_rng(seed)
    starts: dict[bytes, tuple[float, np.ndarray]] = {}
    for _ in range(n_init):
        assign = _lloyd(feats, _kmeanspp(feats, k, rng), max_iter)
        starts.setdefault(assign.tobytes(), (_objective(feats, assign, k), assign))
    # Single-point moves cost a Python loop over the points, so only the best distinct Lloyd
    # results are refined; ties are broken by the order they were found (deterministic).
    ranked = sorted(starts.values(), key=lambda item: -item[0])[:n_refine]
    best: tuple[float, np.ndarray] | None = None
    for _, assign in ranked:
        refined = _refine_by_single_moves(assign, feats, k)
        objective = _objective(feats, refined, k)
        if best is None or objective > best[0] + 1e-9:
            best = (objective, refined)
    assert best is not None
    objective, assign = best
    sums = np.stack([feats[assign == j].sum(axis=0) for j in range(k)])
    centres = sums / np.linalg.norm(sums, axis=1, keepdims=True).clip(1e-12)
    # Renumber clusters by first appearance in label order, so output is stable and readable.
    order: list[int] = []
    for a in assign:
        if a not in order:
            order.append(int(a))
    remap = {old: new for new, old in enumerate(order)}
    assign = np.array([remap[int(a)] for a in assign], dtype=np.int64)
    return assign, centres[order], objective


def _kmeanspp(feats: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding with cosine distance: (k, d) initial centres."""
    n = feats.shape[0]
    chosen = [int(rng.integers(n))]
    for _ in range(k - 1):
        dist = np.clip(1.0 - (feats @ feats[chosen].T).max(axis=1), 0.0, None)
        total = dist.sum()
        chosen.append(int(rng.choice(n, p=dist / total if total > 0 else np.full(n, 1.0 / n))))
    return feats[chosen].copy()


def _lloyd(feats: np.ndarray, centres: np.ndarray, max_iter: int) -> np.ndarray:
    """Lloyd iterations with cosine assignment; returns (n,) cluster ids."""
    for _ in range(max_iter):
        assign = (feats @ centres.T).argmax(axis=1)
        new = centres.copy()
        for j in range(centres.shape[0]):
            members = feats[assign == j]
            if len(members):  # an emptied cluster keeps its centre rather than vanishing
                new[j] = members.sum(axis=0)
        new /= np.linalg.norm(new, axis=1, keepdims=True).clip(1e-12)
        if np.allclose(new, centres, atol=1e-10):
            break
        centres = new
    return (feats @ centres.T).argmax(axis=1)


def _objective(feats: np.ndarray, assign: np.ndarray, k: int) -> float:
    """Total cosine of points to their (normalised) cluster mean = sum of cluster-sum norms."""
    return float(sum(np.linalg.norm(feats[assign == j].sum(axis=0)) for j in range(k)))


def _refine_by_single_moves(assign: np.ndarray, feats: np.ndarray, k: int, max_rounds: int = 50) -> np.ndarray:
    """Move single points between clusters while that raises the objective.

    The spherical k-means objective is sum_j ||S_j|| with S_j the sum of cluster j's unit
    vectors. Lloyd iterations stop in local optima that one point's move can still improve
    ("first variation", Dhillon et al. 2002); on the real VOC features this makes the best
    solution reachable from far more starts, so the result no longer depends on the seed.
    """
    assign = assign.copy()
    sums = np.stack([feats[assign == j].sum(axis=0) for j in range(k)])
    norms = np.linalg.norm(sums, axis=1)
    counts = np.bincount(assign, minlength=k)
    for _ in range(max_rounds):
        moved = False
        for i, x in enumerate(feats):
            a = assign[i]
            if counts[a] == 1:
                continue  # never empty a cluster: k stays what the user asked for
            loss = np.linalg.norm(sums[a] - x) - norms[a]
            gains = np.linalg.norm(sums + x, axis=1) - norms
            gains[a] = -np.inf
            b = int(np.argmax(gains))
            if gains[b] + loss > 1e-10:
                sums[a] -= x
                sums[b] += x
                norms[a], norms[b] = np.linalg.norm(sums[a]), np.linalg.norm(sums[b])
                counts[a] -= 1
                counts[b] += 1
                assign[i] = b
                moved = True
        if not moved:
            break
    return assign


def _name_groups(
    specs: list[LabelSpec],
    assign: np.ndarray,
    feats: np.ndarray,
    centres: np.ndarray,
    namer: Callable[[list[LabelSpec]], str | None] | None,
) -> list[str]:
    """A readable, unique name per cluster: WordNet's common hypernym if known, else the member
    nearest the centre."""
    names: list[str] = []
    for j in range(centres.shape[0]):
        idx = np.flatnonzero(assign == j)
        members = [specs[i] for i in idx]
        name = namer(members) if (namer is not None and len(members) > 1) else None
        if not name or name in names:
            nearest = idx[int(np.argmax(feats[idx] @ centres[j]))]
            name = specs[nearest].text
        base, n = name, 2
        while name in names:
            name, n = f"{base} {n}", n + 1
        names.append(name)
    return names


def build_kmeans_taxonomy(
    labels: list[LabelSpec],
    features: np.ndarray,
    k: int | None = None,
    seed: int = 0,
    name: str = "kmeans",
    n_init: int = 100,
    center: bool = True,
    namer: Callable[[list[LabelSpec]], str | None] | None = None,
    source: str = "",
) -> Taxonomy:
    """Group labels by spherical k-means over their features.

    Args:
        labels: Label specs in label order.
        features: (num_labels, d) features, rows in label order (need not be normalised).
        k: Number of groups (default :func:`default_k`).
        seed: Random seed; the same seed gives the same taxonomy.
        name: Taxonomy name.
        n_init: k-means restarts.
        center: Subtract the mean feature before clustering (see module docstring).
        namer: Optional function naming a group from its members (e.g. WordNet's lowest
            common hypernym); None or a returned None falls back to the nearest member.
        source: Recorded with the stored group features (e.g. ``RN50/openai``).

    Returns:
        A taxonomy with ``group_features`` set to the group centres in the original space.
    """
    n = len(labels)
    if features.shape[0] != n:
        raise UserError(f"got {features.shape[0]} feature rows for {n} labels; give one row per label")
    k = default_k(n) if k is None else k
    if not 1 <= k <= n:
        raise UserError(f"-k must be between 1 and the number of labels ({n}), got {k}")
    unit = features / np.linalg.norm(features, axis=1, keepdims=True).clip(1e-12)
    work = unit - unit.mean(axis=0, keepdims=True) if center and n > 1 else unit
    norms = np.linalg.norm(work, axis=1, keepdims=True)
    work = np.where(norms > 1e-9, work / norms.clip(1e-12), unit)  # a label at the mean keeps its own direction
    assign, centres, objective = spherical_kmeans(work, k, seed=seed, n_init=n_init)
    log.info("spherical k-means: k=%d objective=%.4f", k, objective)
    group_names = _name_groups(labels, assign, work, centres, namer)
    groups = {g: [labels[i].name for i in np.flatnonzero(assign == j)] for j, g in enumerate(group_names)}
    group_feats = np.stack([unit[assign == j].mean(axis=0) for j in range(k)])
    group_feats /= np.linalg.norm(group_feats, axis=1, keepdims=True).clip(1e-12)
    description = f"k-means (k={k}, seed={seed}) over label features{f' from {source}' if source else ''}"
    return Taxonomy(
        name=name,
        labels=list(labels),
        groups=groups,
        description=description,
        group_features=group_feats.astype(np.float32),
        group_features_source=f"k-means centres of {source or 'given'} label features",
    )
