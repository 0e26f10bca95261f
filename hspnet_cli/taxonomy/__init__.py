"""Label -> group hierarchies: the data structure, its file format, builders and comparison."""

from hspnet_cli.taxonomy.core import LabelSpec, Taxonomy, TaxonomyError, taxonomy_from_dict
from hspnet_cli.taxonomy.loading import (
    builtin_path,
    list_builtin,
    load_label_list,
    load_taxonomy,
    resolve_taxonomy_path,
)

__all__ = [
    "LabelSpec",
    "Taxonomy",
    "TaxonomyError",
    "builtin_path",
    "list_builtin",
    "load_label_list",
    "load_taxonomy",
    "resolve_taxonomy_path",
    "taxonomy_from_dict",
]
