"""Agreement between two groupings of the same labels (adjusted Rand index, NMI)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hspnet_cli.core.errors import UserError
from hspnet_cli.taxonomy.core import Taxonomy


@dataclass
class Comparison:
    """How well taxonomy ``a`` agrees with taxonomy ``b`` over their common labels.

    Attributes:
        ari: Adjusted Rand index (1 = same partition, about 0 = chance).
        nmi: Normalised mutual information (arithmetic mean normalisation).
        common: Number of labels both taxonomies have.
        only_a: Labels only ``a`` has.
        only_b: Labels only ``b`` has.
        groups_a: Number of groups of ``a`` over the common labels.
        groups_b: Number of groups of ``b`` over the common labels.
    """

    ari: float
    nmi: float
    common: int
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    groups_a: int = 0
    groups_b: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def compare_taxonomies(a: Taxonomy, b: Taxonomy) -> Comparison:
    """Compare the label -> group assignments of two taxonomies over their common labels.

    Label names are matched exactly. Raises UserError when fewer than two labels are shared.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    group_a, group_b = a.group_of(), b.group_of()
    common = [name for name in a.label_names if name in group_b]
    if len(common) < 2:
        raise UserError(
            f"taxonomies '{a.name}' and '{b.name}' share {len(common)} label(s); "
            "they need at least two common label names to be compared"
        )
    ya = [group_a[name] for name in common]
    yb = [group_b[name] for name in common]
    return Comparison(
        ari=float(adjusted_rand_score(ya, yb)),
        nmi=float(normalized_mutual_info_score(ya, yb)),
        common=len(common),
        only_a=[name for name in a.label_names if name not in group_b],
        only_b=[name for name in b.label_names if name not in group_a],
        groups_a=len(set(ya)),
        groups_b=len(set(yb)),
    )
