"""Two corrections on top of the WordNet tree cut (:mod:`hspnet_cli.taxonomy.wordnet_build`).

1. **No count spent on lone labels** (:func:`cut_without_orphans`). A cut of the hypernym tree
   can only put a label with its hypernyms' other labels. A label alone in its branch
   (``mushroom`` under "organism" next to eighteen animals, which a group at "organism" would
   swallow) therefore costs a whole group, and with a fixed count the mammals, birds and fish
   share one. Such labels are taken out, the rest is cut with the full count (which splits the
   largest groups), and each taken-out label joins the group it resembles most.
2. **Food or organism agrees with the list** (:func:`agree_with_kinds`). A label whose sense
   won narrowly between the organism and the food made of it ("octopus") takes the kind most of
   the other labels hold.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from hspnet_cli.taxonomy.wordnet_senses import LabelResolution, _Senses

if TYPE_CHECKING:
    from nltk.corpus.reader.wordnet import Synset, WordNetCorpusReader

Cut = dict[str, list[int]]  # group node -> label indices
# Margin (sense score) under which a food-or-organism choice follows the list's majority kind:
# twice the margin reported as uncertain, since the kind count is a second look at the context.
AGREE_MARGIN = 0.1
_ORGANISMS = {"noun.animal", "noun.plant"}


def cut_without_orphans(
    cut: Callable[[Cut], Cut], members: Cut, n_groups: int, ctx: _Senses, wn: WordNetCorpusReader, generic: set[str]
) -> tuple[Cut, dict[str, str]]:
    """The cut, with the count spent on splitting big groups rather than on lone labels.

    While the largest group holds more than twice the mean group size: takes out each label
    left alone in a group that is kin to another label (they share a hypernym below the
    generic top of WordNet: mushroom and dog are organisms, car and dog only "whole" things)
    and cuts the rest again with the same count; kept only if that splits the largest group.
    Each taken-out label then joins the group whose members it resembles most (mean Lin). A
    label kin to nothing else in the list ("unidentified flying object" among objects, a car
    among animals) keeps its own group: no group would be its home.

    Args:
        cut: The tree cut for a pool of label nodes (node -> label indices) into ``n_groups``.
        members: Label node -> label indices, for every resolved label.
        n_groups: The requested number of groups.
        ctx: Similarities between synsets.
        wn: The WordNet reader.
        generic: Hypernyms too general to make two labels kin (entity, object, whole, ...).

    Returns:
        Group node -> label indices, and label node -> group node for each label that joined
        a group which is not its hypernym.
    """
    synset = {node: wn.synset(node) for node in members}
    node_of = {i: node for node, ids in members.items() for i in ids}
    pool, taken = dict(members), {}
    first = groups = cut(pool)
    crowded = 2.0 * len(node_of) / n_groups  # a group this big is worth splitting before any lone label
    for _ in range(len(members)):  # each round takes out at least one node, or stops
        alone = [node_of[ids[0]] for ids in groups.values() if len(ids) == 1]
        movable = [
            node
            for node in alone
            if any(_kin(ctx, synset[node], synset[other], generic) for other in pool if other != node)
        ]
        if max(len(ids) for ids in groups.values()) <= crowded or not movable or len(pool) - len(movable) < n_groups:
            break
        for node in movable:
            taken[node] = pool.pop(node)
        groups = cut(pool)
    if not taken or max(len(ids) for ids in groups.values()) >= max(len(ids) for ids in first.values()):
        return first, {}  # the freed count did not split the largest group: keep the lone labels
    attached: dict[str, str] = {}
    for node in sorted(taken, key=lambda n: min(taken[n])):  # label order: the same result every run
        home = max(
            groups,
            key=lambda g: (_resemblance(ctx, synset[node], [synset[node_of[i]] for i in groups[g]]), -min(groups[g])),
        )
        groups[home] = sorted(groups[home] + taken[node])
        attached[node] = home
    return groups, attached


def _kin(ctx: _Senses, a: Synset, b: Synset, generic: set[str]) -> bool:
    """Whether two senses share a hypernym that is not one of the generic top nodes."""
    return bool((ctx.ancestors(a).keys() & ctx.ancestors(b).keys()) - generic)


def _resemblance(ctx: _Senses, sense: Synset, others: list[Synset]) -> float:
    """Mean Lin similarity of a sense to a group's members (0 for no members)."""
    return sum(ctx.lin(sense, o) for o in others) / len(others) if others else 0.0


def agree_with_kinds(wn: WordNetCorpusReader, resolutions: list[LabelResolution]) -> list[LabelResolution]:
    """Food-or-organism choices settled by the kind most of the list holds.

    WordNet files many things twice, as the organism and as what is eaten of it (octopus,
    lobster, carrot, apple), and similarity cannot tell them apart: the seafood is as close to
    bread as the animal is to crab. The list can: among eighteen animals and six foods,
    "octopus" is the animal. A label whose sense beat the other kind by less than
    ``AGREE_MARGIN`` takes the other sense when more of the other labels are of that kind.
    A switched label is listed as uncertain (margin 0), with the sense it left as the
    runner-up, so the user still sees the choice and can pin it.

    Args:
        wn: The WordNet reader.
        resolutions: One per label, in label order.

    Returns:
        The resolutions, a new list (equal to the input when nothing changed).
    """
    kinds = Counter(wn.synset(r.synset).lexname() for r in resolutions if r.synset)
    out = list(resolutions)
    for i, res in enumerate(resolutions):
        if res.synset is None or res.runner_up is None or res.margin >= AGREE_MARGIN:
            continue
        chosen, rival = wn.synset(res.synset), wn.synset(res.runner_up)
        pair = {chosen.lexname(), rival.lexname()}
        if "noun.food" not in pair or not pair & _ORGANISMS:
            continue
        if kinds[rival.lexname()] > kinds[chosen.lexname()] - 1:  # the others, this label not counted
            lemma = res.lemma if res.lemma in {x.name() for x in rival.lemmas()} else rival.lemmas()[0].name()
            out[i] = dataclasses.replace(
                res, synset=rival.name(), lemma=lemma, definition=rival.definition(), margin=0.0, runner_up=res.synset
            )
    return out
