"""Building a taxonomy from WordNet: labels -> noun synsets -> groups cut from the hypernym tree.

1. **Resolve and disambiguate** each label's noun sense by the context of the other labels
   (:mod:`hspnet_cli.taxonomy.wordnet_senses`).
2. **Cut** the tree made of one hypernym path per label (the path sharing most nodes with the
   other labels) into groups: an exact dynamic programme picks the cut with the requested number
   of groups that maximises the members' summed Lin similarity to their group synset. A node may
   keep the labels of children that were not split off, so "instrumentality" holds the household
   objects once "conveyance" is its own group.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hspnet_cli.core.errors import UserError
from hspnet_cli.taxonomy.core import LabelSpec, Taxonomy
from hspnet_cli.taxonomy.wordnet_data import get_wordnet
from hspnet_cli.taxonomy.wordnet_regroup import agree_with_kinds, cut_without_orphans
from hspnet_cli.taxonomy.wordnet_senses import LabelResolution, _Senses, resolve_labels

if TYPE_CHECKING:
    from nltk.corpus.reader.wordnet import Synset, WordNetCorpusReader

UNKNOWN_GROUP = "unknown to wordnet"
_ROOT = "<root>"  # virtual node above all WordNet roots (verbs and adjectives have their own)
# Too generic to name a cluster: a cluster "named" entity or object tells the user nothing.
_GENERIC = {
    "entity.n.01",
    "physical_entity.n.01",
    "abstraction.n.06",
    "object.n.01",
    "whole.n.02",
    "thing.n.12",
    "matter.n.03",
    "causal_agent.n.01",
    "psychological_feature.n.01",
    "attribute.n.02",
    "group.n.01",
    "relation.n.01",
    "measure.n.02",
    "communication.n.02",
}


@dataclass
class WordNetReport:
    """What :func:`build_wordnet_taxonomy` did, for the user to check.

    Attributes:
        labels: One resolution per label, in label order.
        unknown: Labels WordNet does not know (they are in the ``unknown to wordnet`` group).
        groups: Group name -> the synset id it was cut at (None for the unknown group).
        attached: Label -> the group it joined although the group's synset is not its
            hypernym (a label WordNet puts apart from the rest; see ``cut_without_orphans``).
    """

    labels: list[LabelResolution] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    groups: dict[str, str | None] = field(default_factory=dict)
    attached: dict[str, str] = field(default_factory=dict)

    def uncertain(self) -> list[LabelResolution]:
        """Labels whose sense won narrowly over a sense of another kind (check them, or pin)."""
        return [res for res in self.labels if res.uncertain]

    def uncertain_note(self) -> str | None:
        """One line naming each uncertain choice and its rival, with how to pin; None if none."""
        picks = self.uncertain()
        if not picks:
            return None
        named = "; ".join(f"{r.label} = {r.synset} (over {r.runner_up})" for r in picks)
        return (
            f"{len(picks)} label(s) chose their WordNet sense by a narrow margin: {named}. Check them "
            f"and pin the right sense in the label file where it is wrong, e.g. "
            f"'{picks[0].label} = {picks[0].runner_up}'"
        )

    def attached_note(self) -> str | None:
        """One line naming the labels placed in a group outside their WordNet branch; None if none."""
        if not self.attached:
            return None
        named = "; ".join(f"{label} -> {group}" for label, group in self.attached.items())
        return (
            f"{len(self.attached)} label(s) would have been a group of their own and joined the group they "
            f"resemble most instead, so the count went to splitting larger groups: {named}. Move them "
            "in the YAML if another group fits better"
        )

    def by_method(self) -> dict[str, list[str]]:
        """Method -> names of the labels resolved that way."""
        methods = dict.fromkeys(res.method for res in self.labels)
        return {m: [res.label for res in self.labels if res.method == m] for m in methods}


class _Tree:
    """One hypernym path per label, merged into a tree (each node keeps its first parent)."""

    def __init__(self, paths: list[list[Synset]], ctx: _Senses) -> None:
        self.parent: dict[str, str] = {}
        self.children: dict[str, list[str]] = {_ROOT: []}
        self.ic: dict[str, float] = {_ROOT: 0.0}
        for path in paths:
            prev = _ROOT
            for node in path:
                name = node.name()
                if name not in self.parent:
                    self.parent[name] = prev
                    self.children[prev].append(name)
                    self.children[name] = []
                    self.ic[name] = ctx.ic(node)
                prev = name

    def path_to(self, name: str) -> list[str]:
        """Nodes from the top (below the virtual root) down to ``name``."""
        out = [name]
        while self.parent[out[-1]] != _ROOT:
            out.append(self.parent[out[-1]])
        return out[::-1]

    def fit(self, label: str, group: str) -> float:
        """Lin similarity of a label and its group node (1 when they are the same)."""
        both = self.ic[label] + self.ic[group]
        return 2.0 * self.ic[group] / both if both else 1.0


def _choose_paths(ctx: _Senses, synsets: list[Synset]) -> list[list[Synset]]:
    """One hypernym path per synset: the one sharing most nodes with the other labels' paths."""
    support = Counter(name for s in synsets for name in ctx.ancestors(s))
    chosen = []
    for s in synsets:
        paths = s.hypernym_paths()
        # Each node counts the other labels above which it sits; ties: shorter, then first path.
        scores = [(sum(support[a.name()] - 1 for a in p), -len(p), -i) for i, p in enumerate(paths)]
        chosen.append(paths[max(range(len(paths)), key=lambda i: scores[i])])
    return chosen


def _cut(tree: _Tree, members: dict[str, list[int]], n_groups: int) -> dict[str, list[int]]:
    """Best cut of the tree into ``n_groups`` groups (fewer when there are not enough nodes).

    ``members`` maps a node to the labels sitting exactly at it. ``best[v][k]`` is the highest
    summed fit covering subtree ``v`` with ``k`` groups, where ``v``'s own group (if any) holds
    its own labels plus every child subtree that was not split off.
    """
    order, stack = [], [_ROOT]
    while stack:  # pre-order; reversed, it visits children before parents
        order.append(stack.pop())
        stack.extend(reversed(tree.children[order[-1]]))
    below: dict[str, list[tuple[int, str]]] = {}  # (label index, label node) in the subtree
    best: dict[str, dict[int, tuple[float, list[tuple[str, list[int]]]]]] = {}
    for v in reversed(order):
        kids = [c for c in tree.children[v] if below[c]]
        below[v] = [(i, v) for i in members.get(v, [])] + [x for c in kids for x in below[c]]
        own = members.get(v, [])
        # (groups of split-off children, whether v keeps a group) -> (score, groups, kept labels)
        states: dict[tuple[int, bool], tuple[float, list, list[int]]] = {
            (0, bool(own)): (float(len(own)), [], list(own))
        }
        for c in kids:
            lump = sum(tree.fit(node, v) for _, node in below[c])
            nxt: dict[tuple[int, bool], tuple[float, list, list[int]]] = {}
            for (k, kept), (score, groups, ids) in states.items():
                options = [((k, True), (score + lump, groups, ids + [i for i, _ in below[c]]))]
                options += [
                    ((k + kc, kept), (score + sc, groups + gc, ids))
                    for kc, (sc, gc) in best[c].items()
                    if k + kc <= n_groups
                ]
                for key, val in options:
                    if key not in nxt or val[0] > nxt[key][0] + 1e-12:
                        nxt[key] = val
            states = nxt
        best[v] = {}
        for (k, kept), (score, groups, ids) in states.items():
            total = k + int(kept)
            if 0 < total <= n_groups and (total not in best[v] or score > best[v][total][0] + 1e-12):
                best[v][total] = (score, groups + ([(v, sorted(ids))] if kept else []))
    feasible = best[_ROOT]
    return dict(feasible[n_groups if n_groups in feasible else max(feasible)][1])


def _group_labels(
    wn: WordNetCorpusReader, ctx: _Senses, resolutions: list[LabelResolution], n_groups: int, depth: int | None
) -> tuple[dict[int, str], dict[str, str]]:
    """Label index -> group node for the resolved labels, and the labels attached to a group."""
    members: dict[str, list[int]] = {}
    for i, res in enumerate(resolutions):
        if res.synset:
            members.setdefault(res.synset, []).append(i)
    if not members:
        return {}, {}
    tree = _Tree(_choose_paths(ctx, [wn.synset(n) for n in members]), ctx)
    attached: dict[str, str] = {}
    if depth is not None:
        cut: dict[str, list[int]] = {}
        for node, ids in members.items():
            path = tree.path_to(node)
            cut.setdefault(path[min(depth, len(path) - 1)], []).extend(ids)
    else:
        cut, attached = cut_without_orphans(
            lambda pool: _cut(tree, pool, n_groups), members, n_groups, ctx, wn, _GENERIC
        )
    return {i: node for node, ids in cut.items() for i in ids}, attached


def _group_name(synset: Synset, taken: set[str]) -> str:
    """The synset's first lemma, made unique with another lemma or its id."""
    first, *others = [lemma.name().replace("_", " ") for lemma in synset.lemmas()]
    options = [first, *(f"{first} ({alt})" for alt in others), f"{first} ({synset.name()})"]
    return next((cand for cand in options if cand not in taken), synset.name())


def build_wordnet_taxonomy(
    labels: list[LabelSpec], n_groups: int | None = None, depth: int | None = None, name: str = "wordnet"
) -> tuple[Taxonomy, WordNetReport]:
    """Group labels by their WordNet hypernyms.

    Args:
        labels: The labels, in label-index order (kept exactly).
        n_groups: About how many groups to make (default: about the square root of the number
            of labels, at least 2). Labels unknown to WordNet get one extra group.
        depth: Instead of ``n_groups``, cut every label's hypernym path at this depth
            (entity.n.01 is depth 0); a label less deep is its own group node.
        name: The taxonomy's name.

    Returns:
        The taxonomy (each label's resolved synset recorded in ``LabelSpec.wordnet``, prompts
        kept) and a report of how each label was resolved and which synsets the groups are.

    Raises:
        UserError: Both ``n_groups`` and ``depth`` given, a bad count or depth, an invalid
            pinned synset (the message names the label), or WordNet not installed.
    """
    if n_groups is not None and depth is not None:
        raise UserError("give either a number of groups or a depth to cut at, not both")
    if n_groups is not None and n_groups < 1:
        raise UserError(f"the number of groups must be at least 1, got {n_groups}")
    if depth is not None and depth < 0:
        raise UserError(f"the depth must be 0 or more, got {depth}")
    if not labels:
        raise UserError("no labels to group; give at least one label")
    wn = get_wordnet()
    ctx = _Senses(wn)
    resolutions = resolve_labels(wn, labels, ctx)
    resolutions = agree_with_kinds(wn, resolutions)  # octopus among animals is the animal
    report = WordNetReport(labels=resolutions, unknown=[r.label for r in resolutions if r.synset is None])
    target = n_groups if n_groups is not None else max(2, round(math.sqrt(len(labels))))
    group_of, attached = _group_labels(wn, ctx, resolutions, target, depth)
    # Groups in the order of their first label; members in label order.
    groups: dict[str, list[str]] = {}
    names: dict[str | None, str] = {None: UNKNOWN_GROUP}
    for i, spec in enumerate(labels):
        node = group_of.get(i)
        if node not in names:
            names[node] = _group_name(wn.synset(node), set(names.values()))
        report.groups[names[node]] = node
        groups.setdefault(names[node], []).append(spec.name)
    report.attached = {
        spec.name: names[group_of[i]]
        for i, (spec, res) in enumerate(zip(labels, resolutions))
        if res.synset in attached
    }
    out = [
        LabelSpec(name=spec.name, prompt=spec.prompt, wordnet=res.synset or spec.wordnet)
        for spec, res in zip(labels, resolutions)
    ]
    how = f"cut at depth {depth}" if depth is not None else f"{len(groups)} groups"
    return Taxonomy(
        name=name, labels=out, groups=groups, description=f"built from WordNet 3.0 hypernyms ({how})"
    ), report


def common_hypernym_name(specs: list[LabelSpec]) -> str | None:
    """The lemma name of the lowest common hypernym of the labels' synsets.

    Labels are resolved (and disambiguated among themselves) as in
    :func:`build_wordnet_taxonomy`; labels WordNet does not know are ignored.

    Args:
        specs: The labels of one cluster.

    Returns:
        The name (underscores as spaces), or None when WordNet is not installed, no label is
        known, or the common hypernym is too generic to mean anything (entity, object, ...).
    """
    try:
        wn = get_wordnet()
        ctx = _Senses(wn)
        resolutions = resolve_labels(wn, specs, ctx)
    except UserError:
        return None
    synsets = [wn.synset(r.synset) for r in resolutions if r.synset is not None]
    if not synsets:
        return None
    common = set.intersection(*(set(ctx.ancestors(s)) for s in synsets))
    if not common:
        return None
    # The most specific shared node; the name breaks ties so set order never matters.
    lowest = max(sorted(common), key=lambda n: ctx.ancestors(synsets[0])[n])
    if lowest in _GENERIC:
        return None
    return wn.synset(lowest).lemmas()[0].name().replace("_", " ")
