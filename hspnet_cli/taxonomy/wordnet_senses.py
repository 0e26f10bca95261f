"""Choosing each label's WordNet sense: candidates, then context decides.

Every label gets its candidate noun senses (``lookup_noun_senses``; a pinned synset is kept).
Each sense is scored by a prior (low sense numbers, senses frequent in SemCor), its Lin
similarity to the nearest other labels' current senses and gloss overlap with them; labels
re-pick until nothing changes. So in COCO "kite" is the toy and "hot dog" the food. Lin runs on
intrinsic information content, which knows that "feline" is a far tighter class than "person"
although both sit at similar depths.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nltk.corpus.reader.wordnet import WordNetError

from hspnet_cli.core.errors import UserError
from hspnet_cli.taxonomy.core import LabelSpec
from hspnet_cli.taxonomy.wordnet_data import Candidate, information_content, lookup_noun_senses

if TYPE_CHECKING:
    from nltk.corpus.reader.wordnet import Synset, WordNetCorpusReader

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
# The score margin under which a choice between senses of different kinds (lexicographer files:
# noun.animal, noun.food, ...) is reported as uncertain, for the user to check or pin.
LOW_MARGIN = 0.05
_STOP = set(
    """the and for from with are been its his her their your that which who this these those
such used use using any some one two more most other than into onto out over under very usually often
typically especially etc having has have made make makes consisting something someone kind form part
small large long""".split()
)


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
        margin: How far the chosen sense's score was ahead of ``runner_up``'s (inf: none).
        runner_up: The best-placed sense of another kind (another lexicographer file), if any.
    """

    label: str
    text: str
    synset: str | None
    method: str
    lemma: str | None = None
    definition: str = ""
    margin: float = math.inf
    runner_up: str | None = None

    @property
    def uncertain(self) -> bool:
        """Chosen by a narrow margin over a sense of another kind: worth a look, or a pin."""
        return self.runner_up is not None and self.margin < LOW_MARGIN


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
        norm = math.sqrt(
            sum(self.idf.get(w, 0.0) for w in self.signature(a)) * sum(self.idf.get(w, 0.0) for w in self.signature(b))
        )
        return shared / norm

    def choose(
        self, cands: list[list[Synset]], priors: list[list[float]]
    ) -> tuple[list[int], list[tuple[float, int | None]]]:
        """The chosen sense per unit (prior plus context fit, re-picked until stable), and per
        unit the margin over its best sense of another kind (another lexicographer file) with
        that sense's index ((inf, None) when every sense is of one kind)."""
        n = len(cands)
        df = Counter(w for unit in cands for w in set().union(*(self.signature(s) for s in unit)))
        # Words in one unit's senses only cannot link two labels; common words say little.
        self.idf = {w: math.log(n / c) for w, c in df.items() if c > 1}
        choice: list[int | None] = [None] * n
        margin: list[tuple[float, int | None]] = [(math.inf, None)] * n
        for _ in range(_ROUNDS if n > 1 else 0):
            changed = False
            for u in range(n):
                if len(cands[u]) < 2:
                    choice[u] = 0
                    continue
                # A label not yet decided offers its best-matching sense, so the first round
                # is not anchored to everyone's first sense (apple the tree next to banana the herb).
                others = [cands[v] if choice[v] is None else [cands[v][choice[v]]] for v in range(n) if v != u]
                scores = []
                for rank, s in enumerate(cands[u]):
                    current = [max(o, key=lambda x: self.lin(s, x)) for o in others]
                    sims = sorted((self.lin(s, o) for o in current), reverse=True)[:_NEIGHBOURS]
                    # Gloss words shared with a label of another kind say little ("tentacles of
                    # octopus prepared as food" and the jellyfish's tentacles): count the same kind.
                    rel = sorted(
                        (self.gloss(s, o) if o.lexname() == s.lexname() else 0.0 for o in current), reverse=True
                    )[:_NEIGHBOURS]
                    scores.append(priors[u][rank] + sum(sims) / len(sims) + _W_GLOSS * sum(rel) / len(rel))
                pick = max(range(len(scores)), key=lambda r: (scores[r], -r))
                kinds = [r for r, s in enumerate(cands[u]) if s.lexname() != cands[u][pick].lexname()]
                rival = max(kinds, key=lambda r: scores[r], default=None)
                margin[u] = (math.inf, None) if rival is None else (scores[pick] - scores[rival], rival)
                if pick != choice[u]:
                    choice[u], changed = pick, True
            if not changed:
                break
        return [c or 0 for c in choice], margin


def _prior(s: Synset, rank: int, lemma: str) -> float:
    """Favour low sense numbers and senses frequent in the SemCor counts."""
    try:
        count = sum(x.count() for x in s.lemmas() if x.name().lower() == lemma)
    except (OSError, LookupError, ValueError):  # a WordNet copy without cntlist.rev
        count = 0
    return -_PRIOR * rank + _W_COUNT * math.log1p(count)


def resolve_labels(wn: WordNetCorpusReader, labels: list[LabelSpec], ctx: _Senses) -> list[LabelResolution]:
    """Resolve and disambiguate every label (pinned synsets are kept and act as context)."""
    found: list[list[Candidate]] = []
    for spec in labels:
        if spec.wordnet:
            try:
                found.append([(wn.synset(spec.wordnet), "pinned", spec.wordnet)])
            except (WordNetError, ValueError, LookupError):  # nltk's answers to an unknown id
                raise UserError(
                    f"label '{spec.name}': WordNet has no synset '{spec.wordnet}'; "
                    "fix the id (e.g. traffic_light.n.01) or remove it"
                ) from None
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
    priors = [
        [
            _prior(s, r, lemma) - (_W_ALT if alt[k] and how == "head noun" else 0.0)
            for r, (s, how, lemma) in enumerate(units[k])
        ]
        for k in keys
    ]
    picks, margins = ctx.choose([[s for s, _, _ in units[k]] for k in keys], priors)
    choice, margin = dict(zip(keys, picks)), dict(zip(keys, margins))
    out = []
    for spec, cands in zip(labels, found):
        if not cands:
            out.append(LabelResolution(spec.name, spec.text, None, "unknown"))
            continue
        key = tuple(c.name() for c, _, _ in cands)
        s, method, lemma = cands[choice[key]]
        gap, rival = margin[key]
        out.append(
            LabelResolution(
                spec.name,
                spec.text,
                s.name(),
                method,
                lemma,
                s.definition(),
                margin=gap,
                runner_up=units[key][rival][0].name() if rival is not None else None,
            )
        )
    return out
