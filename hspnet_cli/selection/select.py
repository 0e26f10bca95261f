"""``hspnet select``: which N images a person should label next, and why each one.

Strategies (``--strategy``):

* ``uncertainty``: the N images with the highest uncertainty score (mean of exp(-margin), the
  margin being the smallest |logit(p) - logit(threshold)| over labels, and the group doubt, where
  two labels of one group both sit near their thresholds; see :class:`~.scores.ImageStats`).
* ``diversity``: greedy k-center over the embeddings, starting from the labelled images (see
  :mod:`.kcenter`); candidates are a seeded sample of ``pool`` images when more are eligible.
* ``coverage``: round robin over labels, always the label with the fewest labelled (or, without
  labelled annotations, predicted) positives so far, ties to the group with fewer: its most
  likely image not yet chosen. Each pick adds its predicted labels to the counts.
* ``random``: a seeded uniform sample (the baseline to compare with).
* ``mix`` (default): coverage for 20% of N, then uncertainty for 60%, picked by k-center among
  the ``pool_factor`` x that many most uncertain images (at most half of the unlabelled ones;
  uncertain but not near-duplicates of each other or of what is labelled), then diversity for 20% (what nothing covers yet). Shares
  are ``--mix``.

Every random choice draws from ``SeedSequence([seed, stage])``; same inputs and seed give the
same picks, in the same order.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.selection.exclude import Exclusions, read_exclusions
from hspnet_cli.selection.kcenter import farthest_first
from hspnet_cli.selection.scores import ImageStats, ProbSource, image_stats, open_probabilities
from hspnet_cli.tagsfile.reader import TagsOutput, read_tags_output
from hspnet_cli.taxonomy.core import Taxonomy

log = logging.getLogger(__name__)

STRATEGIES = ("mix", "uncertainty", "diversity", "coverage", "random")
DEFAULT_MIX = {"coverage": 0.2, "uncertainty": 0.6, "diversity": 0.2}
_STAGE_SEED = {"random": 1, "diversity": 2, "uncertainty": 3}


def parse_mix(text: str | None) -> dict[str, float]:
    """``coverage=0.2,uncertainty=0.6,diversity=0.2`` -> shares summing to 1 (None: the default).

    Raises:
        UserError: An unknown part, a value that is not a non-negative number, or all zero.
    """
    if not text:
        return dict(DEFAULT_MIX)
    shares = {name: 0.0 for name in DEFAULT_MIX}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        if name.strip() not in shares:
            raise UserError(
                f"--mix: unknown part '{name.strip()}' (use {', '.join(DEFAULT_MIX)}, e.g. "
                "coverage=0.2,uncertainty=0.6,diversity=0.2)"
            )
        try:
            shares[name.strip()] = float(value)
        except ValueError:
            raise UserError(f"--mix: '{item}' needs a number after '='") from None
    if any(v < 0 for v in shares.values()) or sum(shares.values()) <= 0:
        raise UserError(f"--mix: shares must be >= 0 and not all zero; got {text}")
    total = sum(shares.values())
    return {k: v / total for k, v in shares.items()}


@dataclass
class SelectOptions:
    """Every choice of ``hspnet select`` besides its input and output (see the CLI help)."""

    n: int
    strategy: str = "mix"
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    seed: int = 0
    exclude: list[str] = field(default_factory=list)
    model: str | None = None
    pool: int = 100_000
    pool_factor: int = 10
    dims: int = 128

    def check(self) -> None:
        if self.n <= 0:
            raise UserError(f"-n must be a positive number of images; got {self.n}")
        if self.strategy not in STRATEGIES:
            raise UserError(f"--strategy must be one of {', '.join(STRATEGIES)}; got '{self.strategy}'")
        if self.pool < 1 or self.pool_factor < 1 or self.dims < 0:
            raise UserError("--pool and --pool-factor must be >= 1 and --dims >= 0")

    def quotas(self) -> dict[str, int]:
        """Picks per stage, in stage order (coverage, uncertainty, diversity / the one strategy)."""
        if self.strategy != "mix":
            return {self.strategy: self.n}
        raw = {k: self.mix.get(k, 0.0) * self.n for k in DEFAULT_MIX}
        out = {k: int(np.floor(v)) for k, v in raw.items()}
        for k in sorted(raw, key=lambda k: (out[k] - raw[k], list(raw).index(k)))[: self.n - sum(out.values())]:
            out[k] += 1  # largest remainders first, so the quotas add up to n
        return {k: v for k, v in out.items() if v > 0}


@dataclass
class Selection:
    """The picks and what is known about them (see :mod:`.outputs` for the files)."""

    tags: TagsOutput
    taxonomy: Taxonomy
    source: ProbSource
    stats: ImageStats
    exclusions: Exclusions
    options: SelectOptions
    rows: np.ndarray  # picked row ids, in pick order
    reasons: list[str]
    distances: np.ndarray  # k-center distance at pick time (nan: not a k-center pick)
    targets: np.ndarray  # coverage: the label aimed at (-1 otherwise)
    thresholds: np.ndarray
    facts: dict[str, Any] = field(default_factory=dict)


def manifest_taxonomy(tags: TagsOutput) -> Taxonomy:
    """The labels and groups the tag output was made with (from its manifest)."""
    from hspnet_cli.taxonomy.core import taxonomy_from_dict

    labels = tags.manifest.get("labels") or []
    groups = tags.manifest.get("groups") or {}
    if not groups:
        groups = {name: [name] for name in labels}  # no hierarchy recorded: one group per label
    return taxonomy_from_dict(
        {"name": str(tags.manifest.get("taxonomy") or "tags"), "labels": labels, "groups": groups},
        source=str(tags.file),
    )


def _thresholds(tags: TagsOutput, n_labels: int) -> np.ndarray:
    values = tags.manifest.get("thresholds")
    if isinstance(values, list) and len(values) == n_labels:
        return np.asarray(values, np.float32)
    log.warning("%s: its manifest has no per-label thresholds; using 0.5", tags.file)
    return np.full(n_labels, 0.5, np.float32)


@dataclass
class _Inputs:
    """What every stage reads: the tag output, its labels, thresholds and exclusions."""

    tags: TagsOutput
    taxonomy: Taxonomy
    thresholds: np.ndarray
    exclusions: Exclusions
    eligible: np.ndarray  # (N,) bool: not labelled yet
    source: ProbSource
    members: list[np.ndarray]  # label ids of each group, in group order


@dataclass
class _Picks:
    """The picks so far, in pick order, with why each was taken."""

    picked: np.ndarray  # (N,) bool
    rows: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    distances: list[float] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)

    def take(
        self, new: list[int], reason: str, distances: list[float] | None = None, targets: list[int] | None = None
    ) -> None:
        self.rows.extend(new)
        self.reasons.extend([reason] * len(new))
        self.distances.extend(distances if distances is not None else [float("nan")] * len(new))
        self.targets.extend(targets if targets is not None else [-1] * len(new))
        self.picked[new] = True


def select_images(
    tags_file: str | Path,
    options: SelectOptions,
    progress: Callable[[str, int], Any] | None = None,
    source: ProbSource | None = None,
) -> Selection:
    """Choose ``options.n`` images of a tag output to label next (see the module docstring).

    Args:
        tags_file: ``tags.csv`` / ``tags.jsonl`` of ``hspnet tag`` or ``hspnet index merge``.
        options: Strategy, mix, seed, exclusions, model and pool sizes.
        progress: Factory ``(description, rows) -> context with .advance(n)`` for the scoring pass.
        source: Probabilities the caller already has, with the tag output they belong to (which is
            then not read again; default: :func:`~.scores.open_probabilities` of ``tags_file``).

    Raises:
        UserError: Bad input, or a strategy that needs every label's probability when only the
            chosen labels' scores are known.
    """
    options.check()
    clock = {"start": time.perf_counter()}
    quotas = options.quotas()
    inputs = _open_inputs(tags_file, options, quotas, source)
    clock["read"] = time.perf_counter()
    stats, tagged_rate = _score(inputs, quotas, progress)
    clock["score"] = time.perf_counter()
    picks = _Picks(np.zeros(inputs.tags.n, dtype=bool))
    facts: dict[str, Any] = {
        "tagged_rate": round(tagged_rate, 6),
        "kcenter": {},
        "thresholds": inputs.tags.threshold_source,
    }
    for stage, quota in quotas.items():
        quota = min(quota, int((inputs.eligible & ~picks.picked).sum()))
        if quota <= 0:
            continue
        rng = np.random.default_rng(np.random.SeedSequence([options.seed, _STAGE_SEED.get(stage, 0)]))
        if stage == "random":
            _pick_random(inputs, picks, quota, rng)
        elif stage == "coverage":
            _pick_coverage(inputs, stats, picks, quota)
        elif stage == "uncertainty" and options.strategy == "uncertainty":
            _pick_most_uncertain(inputs, stats, picks, quota)
        else:  # the mix's uncertainty and diversity stages: k-center over a pool
            facts["kcenter"][stage] = _pick_kcenter(stage, inputs, stats, picks, quota, options, rng)
    clock["select"] = time.perf_counter()
    facts["seconds"] = {
        "read": clock["read"] - clock["start"],
        "score": clock["score"] - clock["read"],
        "select": clock["select"] - clock["score"],
    }
    return Selection(
        tags=inputs.tags,
        taxonomy=inputs.taxonomy,
        source=inputs.source,
        stats=stats,
        exclusions=inputs.exclusions,
        options=options,
        rows=np.asarray(picks.rows, np.int64),
        reasons=picks.reasons,
        distances=np.asarray(picks.distances, np.float32),
        targets=np.asarray(picks.targets, np.int64),
        thresholds=inputs.thresholds,
        facts=facts,
    )


def _open_inputs(
    tags_file: str | Path, options: SelectOptions, quotas: dict[str, int], source: ProbSource | None
) -> _Inputs:
    """Stage 1: the tag output, its taxonomy and thresholds, what is labelled already, and the
    probabilities (refused when a strategy needs every label's and only the tags' are known)."""
    tags = source.tags if source is not None else read_tags_output(tags_file)
    tax = manifest_taxonomy(tags)
    thresholds = _thresholds(tags, tax.num_labels)
    excl = read_exclusions(options.exclude, tags, tax)
    eligible = ~excl.mask
    n_eligible = int(eligible.sum())
    if tags.n == 0:
        raise UserError(
            f"{tags.file}: no tagged images (the tags file has no rows); tag a folder with images "
            "first (hspnet tag IMAGES -o tags.csv)"
        )
    if n_eligible == 0:
        raise UserError(f"{tags.file}: all {tags.n} tagged images are labelled already (--exclude); nothing to select")
    if n_eligible < options.n:
        log.warning("only %d image(s) are not labelled yet; selecting all of them", n_eligible)
    source = source if source is not None else open_probabilities(tags, options.model)
    if not source.complete and "uncertainty" in quotas:
        raise UserError(
            f"{tags.file}: uncertainty needs every label's probability, and {source.detail}; "
            "pass --checkpoint (the model that tagged), tag with --format jsonl, or use --strategy "
            "diversity, coverage or random"
        )
    members = [np.asarray([tax.label_index(m) for m in ms], np.int64) for ms in tax.groups.values()]
    return _Inputs(tags, tax, thresholds, excl, eligible, source, members)


def _score(
    inputs: _Inputs, quotas: dict[str, int], progress: Callable[[str, int], Any] | None
) -> tuple[ImageStats, float]:
    """Stage 2: one pass over the probabilities (uncertainty, group doubt, coverage candidates).

    Returns:
        (the per-image statistics, the share of images with a label at or above its threshold).
    """
    tags = inputs.tags
    bar = progress("scoring", tags.n) if progress is not None else contextlib.nullcontext()
    with bar:
        stats = image_stats(
            inputs.source,
            inputs.thresholds,
            inputs.members,
            inputs.eligible,
            quotas.get("coverage", 0),
            getattr(bar, "advance", None),
        )
    tagged_rate = float((stats.positives > 0).mean()) if tags.n else 0.0
    if inputs.source.complete and tagged_rate < 0.05:
        # a model trained on single positives rarely reaches 0.5: distances to an unreached threshold
        # rank images by their best score, not by doubt
        log.warning(
            "%s: only %.1f%% of the images have a label at or above its threshold; the thresholds are "
            "probably not calibrated (hspnet calibrate, then hspnet tag --thresholds), and uncertainty "
            "around them means little",
            tags.file,
            100 * tagged_rate,
        )
    return stats, tagged_rate


def _pick_random(inputs: _Inputs, picks: _Picks, quota: int, rng: np.random.Generator) -> None:
    """``random``: a seeded uniform sample of what is left."""
    free = np.flatnonzero(inputs.eligible & ~picks.picked)
    picks.take(np.sort(rng.choice(free, size=quota, replace=False)).tolist(), "random")


def _pick_coverage(inputs: _Inputs, stats: ImageStats, picks: _Picks, quota: int) -> None:
    """``coverage``: round robin over the rarest labels."""
    chosen, aimed = _coverage(
        stats, inputs.source, inputs.thresholds, inputs.members, inputs.exclusions, picks.picked, quota
    )
    picks.take(chosen, "coverage", targets=aimed)


def _pick_most_uncertain(inputs: _Inputs, stats: ImageStats, picks: _Picks, quota: int) -> None:
    """``uncertainty`` alone: the most uncertain images, best first."""
    free = np.flatnonzero(inputs.eligible & ~picks.picked)
    picks.take(free[_best(stats.uncertainty[free], free, quota)].tolist(), "uncertainty")


def _pick_kcenter(
    stage: str,
    inputs: _Inputs,
    stats: ImageStats,
    picks: _Picks,
    quota: int,
    options: SelectOptions,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """``diversity`` and the mix's ``uncertainty``: greedy k-center from what is labelled or picked,
    over a pool (the most uncertain images, or a seeded sample of what is left).

    Returns:
        Facts about the k-center run for the report.
    """
    free = np.flatnonzero(inputs.eligible & ~picks.picked)
    if stage == "uncertainty":
        # never more than half of what is left, or the "most uncertain" pool would be everything
        size = max(quota, min(quota * options.pool_factor, len(free) // 2))
        pool = free[_best(stats.uncertainty[free], free, min(len(free), size))]
    else:
        pool = free if len(free) <= options.pool else rng.choice(free, size=options.pool, replace=False)
    centres = np.concatenate([np.flatnonzero(inputs.exclusions.mask), np.asarray(picks.rows, np.int64)])
    res = farthest_first(inputs.tags.embeddings(), pool, quota, centres, dims=options.dims, seed=options.seed)
    picks.take(res.picks.tolist(), stage, distances=res.distances.tolist())
    return {
        "pool": int(len(pool)),
        "centres": int(len(centres)),
        "dims": res.dims,
        "radius_after": round(res.radius, 6),
    }


def _best(scores: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k highest ``scores``, best first, ties to the lower id."""
    if k >= len(scores):
        return np.lexsort((ids, -scores))
    part = np.argpartition(-scores, k - 1)[:k]
    cut = scores[part].min()
    part = np.flatnonzero(scores >= cut)
    return part[np.lexsort((ids[part], -scores[part]))][:k]


def _coverage(
    stats: ImageStats,
    source: ProbSource,
    thresholds: np.ndarray,
    members: list[np.ndarray],
    excl: Exclusions,
    picked: np.ndarray,
    quota: int,
) -> tuple[list[int], list[int]]:
    """Round robin over the rarest labels (see the module docstring): (rows, label aimed at)."""
    n_labels = len(thresholds)
    known = excl.labelled_positives is not None
    counts = (excl.labelled_positives if known else stats.label_positives).astype(np.float64).copy()
    # ties between labels as rare as each other go to the one the pool shows less of
    tiebreak = stats.label_positives.astype(np.float64)
    group_of = np.zeros(n_labels, np.int64)
    for g, ms in enumerate(members):
        group_of[ms] = g
    pointer = np.zeros(n_labels, np.int64)
    open_labels = np.ones(n_labels, dtype=bool)
    chosen: list[int] = []
    aimed: list[int] = []
    while len(chosen) < quota and open_labels.any():
        group_counts = np.bincount(group_of, weights=counts, minlength=len(members))
        order = np.lexsort((np.arange(n_labels), tiebreak, group_counts[group_of], counts))
        label = int(next(j for j in order if open_labels[j]))
        cands = stats.candidates[label]
        while pointer[label] < len(cands) and picked[cands[pointer[label]]]:
            pointer[label] += 1
        if pointer[label] >= len(cands):
            open_labels[label] = False
            continue
        row = int(cands[pointer[label]])
        picked[row] = True
        chosen.append(row)
        aimed.append(label)
        predicted = source.rows(np.asarray([row]))[0] >= thresholds
        predicted[label] = True  # the person is shown it for this label: count it as looked at
        counts += predicted
    picked[chosen] = False  # the caller marks them with the rest of the stage
    return chosen, aimed
