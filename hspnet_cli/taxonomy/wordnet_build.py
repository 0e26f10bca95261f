"""Building a taxonomy from WordNet: labels -> noun synsets -> groups cut from the hypernym tree.

1. **Resolve** each label to candidate noun senses (pinned synset, else ``lookup_noun_senses``).
2. **Disambiguate** by context: each label's first few senses are scored by Lin similarity to
   the nearest other labels' current senses, plus gloss overlap, plus a prior for low sense
   numbers and frequent senses; labels re-pick until nothing changes. So in COCO "kite" is the
   toy and "hot dog" the food. Lin runs on intrinsic information content, which knows that
   "feline" is a far tighter class than "person" although both sit at similar depths.
3. **Cut** the tree made of one hypernym path per label (the path sharing most nodes with the
   other labels) into groups: an exact dynamic programme picks the cut with the requested number
   of groups that maximises the members' summed Lin similarity to their group synset. A node may
   keep the labels of children that were not split off, so "instrumentality" holds the household
   objects once "conveyance" is its own group.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nltk.corpus.reader.wordnet import WordNetError

from hspnet_cli.errors import UserError
from hspnet_cli.taxonomy.core import LabelSpec, Taxonomy
from hspnet_cli.taxonomy.wordnet_data import Candidate, get_wordnet, information_content, lookup_noun_senses

if TYPE_CHECKING:
    from nltk.corpus.reader.wordnet import Synset, WordNetCorpusReader

UNKNOWN_GROUP = "unknown to wordnet"
_ROOT = "<root>"  # virtual node above all WordNet roots (verbs and adjectives have their own)
# Too generic to name a cluster: a cluster "named" entity or object tells the user nothing.
_GENERIC = {"entity.n.01", "physical_entity.n.01", "abstraction.n.06", "object.n.01", "whole.n.02",
            "thing.n.12", "matter.n.03", "causal_agent.n.01", "psychological_feature.n.01",
            "attribute.n.02", "group.n.01", "relation.n.01", "measure.n.02", "communication.n.02"}
# Sense choice (checked on COCO, VOC and NUS-WIDE): senses per label, neighbours that count as
# context, weights of gloss overlap and SemCor sense count, score lost per sense number, and the
# handicap of a head noun against a run-together lemma ("glass" vs "wineglass").
_CANDIDATES = 4
_NEIGHBOURS = 3
_W_GLOSS = 0.25
_W_COUNT = 0.03
_PRIOR = 0.05
_ROUNDS = 10
_W_ALT = 0.1
_STOP = set("""the and for from with are been its his her their your that which who this these those
such used use using any some one two more most other than into onto out over under very usually often
typically especially etc having has have made make makes consisting something someone kind form part
small large long""".split())


@dataclass(frozen=True)
class LabelResolution:
    """How one label was mapped to WordNet.

    Attributes:
        label: The label name.
        text: The text that was looked up (the prompt, else the name).
        synset: The chosen synset id, or None when WordNet does not know the label.
        method: pinned, exact, morphy, compound join/split, head noun, derived or unknown.
        lemma: The WordNet lemma that matched (e.g. ``ball`` for "sports ball").
        definition: The synset's gloss, so a user can check the sense.
    """

    label: str
    text: str
    synset: str | None
    method: str
    lemma: str | None = None
    definition: str = ""


@dataclass
class WordNetReport:
    """What :func:`build_wordnet_taxonomy` did, for the user to check.

    Attributes:
        labels: One resolution per label, in label order.
        unknown: Labels WordNet does not know (they are in the ``unknown to wordnet`` group).
        groups: Group name -> the synset id it was cut at (None for the unknown group).
    """

    labels: list[LabelResolution] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    groups: dict[str, str | None] = field(default_factory=dict)

    def by_method(self) -> dict[str, list[str]]:
        """Method -> names of the labels resolved that way."""
        methods = dict.fromkeys(res.method for res in self.labels)
        return {m: [res.label for res in self.labels if res.method == m] for m in methods}


class _Senses:
    """Similarities between synsets: Lin on information content, and gloss overlap."""

    def __init__(self, wn: WordNetCorpusReader) -> None:
        self._ic = information_content(wn)
        self._anc: dict[str, dict[str, float]] = {}
        self._sim: dict[tuple[str, str], float] = {}
        self._sig: dict[str, set[str]] = {}
        self.idf: dict[str, float] = {}

    def ic(self, s: Synset) -> float:
        """Information content; adjectives, outside any hierarchy, count as fully specific."""
        return self._ic.get((s.pos(), s.offset()), 1.0) if s.pos() in "nv" else 1.0

    def ancestors(self, s: Synset) -> dict[str, float]:
        """Every hypernym of ``s`` (and ``s`` itself) with its information content."""
        if s.name() not in self._anc:
            self._anc[s.name()] = {a.name(): self.ic(a) for path in s.hypernym_paths() for a in path}
        return self._anc[s.name()]

    def lin(self, a: Synset, b: Synset) -> float:
        """Lin similarity: twice the shared information over the information of both (0..1)."""
        key = (a.name(), b.name()) if a.name() <= b.name() else (b.name(), a.name())
        if key not in self._sim:
            aa, bb = self.ancestors(a), self.ancestors(b)
            shared = max((aa[c] for c in aa.keys() & bb.keys()), default=0.0)
            both = aa[a.name()] + bb[b.name()]
            self._sim[key] = 2.0 * shared / both if both else 1.0
        return self._sim[key]

    def signature(self, s: Synset) -> set[str]:
        """Content words of the gloss, the lemmas and the direct hypernyms' lemmas."""
        if s.name() not in self._sig:
            names = [x.name() for h in [s, *s.hypernyms(), *s.instance_hypernyms()] for x in h.lemmas()]
            text = " ".join([s.definition(), *names]).replace("_", " ").lower()
            self._sig[s.name()] = {w for w in re.findall(r"[a-z]+", text) if len(w) > 2 and w not in _STOP}
        return self._sig[s.name()]

    def gloss(self, a: Synset, b: Synset) -> float:
        """Cosine overlap of two signatures, words weighted by rarity among the candidates."""
        shared = sum(self.idf.get(w, 0.0) for w in self.signature(a) & self.signature(b))
        if not shared:
            return 0.0
        norm = math.sqrt(sum(self.idf.get(w, 0.0) for w in self.signature(a))
                         * sum(self.idf.get(w, 0.0) for w in self.signature(b)))
        return shared / norm

    def choose(self, cands: list[list[Synset]], priors: list[list[float]]) -> list[int]:
        """The chosen sense per unit: prior plus context fit, re-picked until stable."""
        n = len(cands)
        df = Counter(w for unit in cands for w in set().union(*(self.signature(s) for s in unit)))
        # Words in one unit's senses only cannot link two labels; common words say little.
        self.idf = {w: math.log(n / c) for w, c in df.items() if c > 1}
        choice: list[int | None] = [None] * n
        for _ in range(_ROUNDS if n > 1 else 0):
            changed = False
            for u in range(n):
                if len(cands[u]) < 2:
                    choice[u] = 0
                    continue
                # A label not yet decided offers its best-matching sense, so the first round
                # is not anchored to everyone's first sense (apple the tree next to banana the herb).
                others = [cands[v] if choice[v] is None else [cands[v][choice[v]]]
                          for v in range(n) if v != u]
                scores = []
                for rank, s in enumerate(cands[u]):
                    current = [max(o, key=lambda x: self.lin(s, x)) for o in others]
                    sims = sorted((self.lin(s, o) for o in current), reverse=True)[:_NEIGHBOURS]
                    rel = sorted((self.gloss(s, o) for o in current), reverse=True)[:_NEIGHBOURS]
                    scores.append(priors[u][rank] + sum(sims) / len(sims) + _W_GLOSS * sum(rel) / len(rel))
                pick = max(range(len(scores)), key=lambda r: (scores[r], -r))
                if pick != choice[u]:
                    choice[u], changed = pick, True
            if not changed:
                break
        return [c or 0 for c in choice]


def _prior(s: Synset, rank: int, lemma: str) -> float:
    """Favour low sense numbers and senses frequent in the SemCor counts."""
    try:
        count = sum(x.count() for x in s.lemmas() if x.name().lower() == lemma)
    except (OSError, LookupError, ValueError):  # a WordNet copy without cntlist.rev
        count = 0
    return -_PRIOR * rank + _W_COUNT * math.log1p(count)


def _resolve(wn: WordNetCorpusReader, labels: list[LabelSpec], ctx: _Senses) -> list[LabelResolution]:
    """Resolve and disambiguate every label (pinned synsets are kept and act as context)."""
    found: list[list[Candidate]] = []
    for spec in labels:
        if spec.wordnet:
            try:
                found.append([(wn.synset(spec.wordnet), "pinned", spec.wordnet)])
            except (WordNetError, ValueError, LookupError):  # nltk's answers to an unknown id
                raise UserError(f"label '{spec.name}': WordNet has no synset '{spec.wordnet}'; "
                                "fix the id (e.g. traffic_light.n.01) or remove it") from None
            continue
        words = [w for w in re.split(r"[\s_]+", spec.text.strip().lower()) if w]
        found.append(lookup_noun_senses(wn, words)[:_CANDIDATES] if words else [])
    # Labels with the same candidates ("red wing", "blue wing") are one unit of context.
    units: dict[tuple[str, ...], list[Candidate]] = {}
    for cands in found:
        if cands:
            units.setdefault(tuple(s.name() for s, _, _ in cands), cands)
    keys = list(units)
    alt = {k: units[k][0][1] == "compound join" for k in keys}  # "glass" against "wineglass"
    priors = [[_prior(s, r, lemma) - (_W_ALT if alt[k] and how == "head noun" else 0.0)
               for r, (s, how, lemma) in enumerate(units[k])] for k in keys]
    choice = dict(zip(keys, ctx.choose([[s for s, _, _ in units[k]] for k in keys], priors)))
    out = []
    for spec, cands in zip(labels, found):
        if not cands:
            out.append(LabelResolution(spec.name, spec.text, None, "unknown"))
            continue
        s, method, lemma = cands[choice[tuple(c.name() for c, _, _ in cands)]]
        out.append(LabelResolution(spec.name, spec.text, s.name(), method, lemma, s.definition()))
    return out


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
            (0, bool(own)): (float(len(own)), [], list(own))}
        for c in kids:
            lump = sum(tree.fit(node, v) for _, node in below[c])
            nxt: dict[tuple[int, bool], tuple[float, list, list[int]]] = {}
            for (k, kept), (score, groups, ids) in states.items():
                options = [((k, True), (score + lump, groups, ids + [i for i, _ in below[c]]))]
                options += [((k + kc, kept), (score + sc, groups + gc, ids))
                            for kc, (sc, gc) in best[c].items() if k + kc <= n_groups]
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


def _group_name(synset: Synset, taken: set[str]) -> str:
    """The synset's first lemma, made unique with another lemma or its id."""
    first, *others = [lemma.name().replace("_", " ") for lemma in synset.lemmas()]
    options = [first, *(f"{first} ({alt})" for alt in others), f"{first} ({synset.name()})"]
    return next((cand for cand in options if cand not in taken), synset.name())


def build_wordnet_taxonomy(labels: list[LabelSpec], n_groups: int | None = None, depth: int | None = None,
                           name: str = "wordnet") -> tuple[Taxonomy, WordNetReport]:
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
    resolutions = _resolve(wn, labels, ctx)
    report = WordNetReport(labels=resolutions, unknown=[r.label for r in resolutions if r.synset is None])
    members: dict[str, list[int]] = {}
    for i, res in enumerate(resolutions):
        if res.synset:
            members.setdefault(res.synset, []).append(i)
    group_of: dict[int, str] = {}
    if members:
        tree = _Tree(_choose_paths(ctx, [wn.synset(n) for n in members]), ctx)
        if depth is not None:
            cut = {}
            for node, ids in members.items():
                path = tree.path_to(node)
                cut.setdefault(path[min(depth, len(path) - 1)], []).extend(ids)
        else:
            target = n_groups if n_groups is not None else max(2, round(math.sqrt(len(labels))))
            cut = _cut(tree, members, target)
        group_of = {i: node for node, ids in cut.items() for i in ids}
    # Groups in the order of their first label; members in label order.
    groups: dict[str, list[str]] = {}
    names: dict[str | None, str] = {None: UNKNOWN_GROUP}
    for i, spec in enumerate(labels):
        node = group_of.get(i)
        if node not in names:
            names[node] = _group_name(wn.synset(node), set(names.values()))
        report.groups[names[node]] = node
        groups.setdefault(names[node], []).append(spec.name)
    out = [LabelSpec(name=spec.name, prompt=spec.prompt, wordnet=res.synset or spec.wordnet)
           for spec, res in zip(labels, resolutions)]
    how = f"cut at depth {depth}" if depth is not None else f"{len(groups)} groups"
    return Taxonomy(name=name, labels=out, groups=groups,
                    description=f"built from WordNet 3.0 hypernyms ({how})"), report


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
        resolutions = _resolve(wn, specs, ctx)
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
