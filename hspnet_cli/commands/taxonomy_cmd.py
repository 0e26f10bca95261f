"""``hspnet taxonomy``: list, show, validate, build and compare label -> group hierarchies."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.tree import Tree

from hspnet_cli.commands import options as opt
from hspnet_cli.core.console import print_json, say
from hspnet_cli.core.errors import UserError

app = opt.App(help="Label -> group hierarchies: built-ins, WordNet and k-means builders, checks.", no_args_is_help=True)


def taxonomy_tree(tax, max_labels: int = 0) -> Tree:  # type: ignore[no-untyped-def]
    """A rich tree of groups and their labels (with label indices), ``max_labels`` per group (0 = all)."""
    tree = Tree(f"[bold]{tax.name}[/]: {tax.num_labels} labels in {tax.num_groups} groups")
    for group, members in tax.groups.items():
        branch = tree.add(f"[cyan]{group}[/] ({len(members)})")
        shown = members if max_labels <= 0 else members[:max_labels]
        for label in shown:
            branch.add(f"{label} [dim]#{tax.label_index(label)}[/]")
        if len(shown) < len(members):
            branch.add(f"[dim]... and {len(members) - len(shown)} more[/]")
    return tree


@app.command("list")
def list_cmd(as_json: bool = opt.as_json("Print JSON instead of a table.")) -> None:
    """List the built-in taxonomies."""
    from hspnet_cli.taxonomy import list_builtin, load_taxonomy

    rows = [load_taxonomy(name) for name in list_builtin()]
    if as_json:
        print_json([{"name": t.name, "labels": t.num_labels, "groups": t.num_groups} for t in rows])
        return
    table = Table(title="Built-in taxonomies")
    for column in ("name", "labels", "groups", "groups (first)"):
        table.add_column(column)
    for t in rows:
        table.add_row(t.name, str(t.num_labels), str(t.num_groups), ", ".join(t.group_names[:6]) + " ...")
    say(table)


@app.command("show")
def show_cmd(
    taxonomy: str = typer.Argument(..., help="Built-in name (coco, voc, nuswide, cub) or a taxonomy YAML."),
    max_labels: int = typer.Option(0, "--max-labels", help="Labels shown per group (0 = all)."),
    as_json: bool = opt.as_json("Print the taxonomy as JSON."),
) -> None:
    """Show a taxonomy as a tree with counts."""
    from hspnet_cli.taxonomy import load_taxonomy

    tax = load_taxonomy(taxonomy)
    if as_json:
        data = tax.to_dict()
        data.pop("group_features", None)
        print_json(data)
        return
    say(taxonomy_tree(tax, max_labels))
    if tax.group_features is not None:
        say(f"group features: {tax.group_features.shape[1]}-d ({tax.group_features_source})")


@app.command("validate")
def validate_cmd(
    path: str = typer.Argument(..., help="Taxonomy YAML (or built-in name) to check."),
    labels: Optional[Path] = typer.Option(
        None,
        "--labels",
        help="A dataset's label list (text, one a line, or YAML 'labels:'); the taxonomy must cover it.",
    ),
) -> None:
    """Check a taxonomy file; with --labels also that it covers a dataset's label set."""
    from hspnet_cli.taxonomy import load_label_list, load_taxonomy

    tax = load_taxonomy(path)
    if labels is not None:
        wanted = [spec.name for spec in load_label_list(labels)]
        missing = [name for name in wanted if name not in set(tax.label_names)]
        unused = [name for name in tax.label_names if name not in set(wanted)]
        if missing:
            raise UserError(
                f"{path}: does not cover {len(missing)} label(s) of {labels}: "
                f"{', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}; add them to a group"
            )
        if unused:
            say(f"[yellow]note:[/] {len(unused)} taxonomy label(s) not in {labels}: {', '.join(unused[:20])}")
    say(f"[green]ok[/] {path}: {tax.num_labels} labels in {tax.num_groups} groups")


@app.command("compare")
def compare_cmd(
    a: str = typer.Argument(..., help="First taxonomy (path or built-in name)."),
    b: str = typer.Argument(..., help="Second taxonomy, e.g. a reference grouping."),
    as_json: bool = opt.as_json("Print JSON."),
) -> None:
    """Agreement of two groupings over their common labels: adjusted Rand index and NMI."""
    from hspnet_cli.taxonomy import load_taxonomy
    from hspnet_cli.taxonomy.compare import compare_taxonomies

    result = compare_taxonomies(load_taxonomy(a), load_taxonomy(b))
    if as_json:
        print_json(result.to_dict())
        return
    table = Table(title=f"{a} vs {b}")
    for column in ("common labels", "groups A", "groups B", "ARI", "NMI"):
        table.add_column(column, justify="right")
    table.add_row(
        str(result.common), str(result.groups_a), str(result.groups_b), f"{result.ari:.3f}", f"{result.nmi:.3f}"
    )
    say(table)
    for side, names in (("A", result.only_a), ("B", result.only_b)):
        if names:
            say(f"[yellow]only in {side}:[/] {len(names)} label(s): {', '.join(names[:20])}")


@app.command("build")
def build_cmd(
    labels: str = typer.Argument(
        ...,
        help="Labels: text file (one a line, 'label = synset.n.01' pins a "
        "WordNet sense), labels YAML, taxonomy YAML or built-in name.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Taxonomy YAML to write."),
    wordnet: bool = typer.Option(False, "--wordnet", help="Group by WordNet hypernyms."),
    kmeans: bool = typer.Option(False, "--kmeans", help="Group by k-means over CLIP text features."),
    groups: Optional[int] = typer.Option(None, "--groups", help="WordNet: about this many groups."),
    depth: Optional[int] = typer.Option(None, "--depth", help="WordNet: cut the hypernym tree at this depth."),
    k: Optional[int] = typer.Option(None, "-k", help="k-means: number of groups (default about sqrt(labels))."),
    features: Optional[Path] = typer.Option(
        None,
        "--features",
        help="k-means: precomputed label features (.npy, one row per label in label order) instead of a model.",
    ),
    clip_model: str = opt.clip_model(help="k-means: open_clip model name."),
    pretrained: str = opt.pretrained(
        help="k-means: pretrained tag, checkpoint file, or 'none' (random weights: tests only)."
    ),
    template: str = typer.Option("a photo of a {}.", "--template", help="k-means: prompt template."),
    seed: int = typer.Option(0, "--seed", help="k-means: random seed."),
    center: bool = typer.Option(
        True, "--center/--no-center", help="k-means: subtract the mean label feature before clustering."
    ),
    name: Optional[str] = typer.Option(None, "--name", help="Taxonomy name (default: output file stem)."),
    reference: Optional[str] = typer.Option(None, "--compare", help="Also report ARI/NMI against this taxonomy."),
    overwrite: bool = opt.overwrite("Replace OUT if it exists."),
    as_json: bool = opt.as_json("Print a JSON summary."),
    old_model: Optional[str] = opt.old_option("--model"),
) -> None:
    """Build a taxonomy from a label list, by WordNet or by k-means."""
    from hspnet_cli.model.clip_models import label_encoder
    from hspnet_cli.taxonomy.build import build_taxonomy

    clip_model = opt.deprecated(clip_model, old_model, old="--model", new="--clip-model", new_default="RN50")
    if wordnet == kmeans:
        raise UserError("choose exactly one of --wordnet or --kmeans")
    result = build_taxonomy(
        labels,
        out,
        method="wordnet" if wordnet else "kmeans",
        n_groups=groups,
        depth=depth,
        k=k,
        features=features,
        encoder=label_encoder(clip_model, pretrained, template, seed=seed) if kmeans else None,
        seed=seed,
        center=center,
        name=name,
        reference=reference,
        overwrite=overwrite,
    )
    if as_json:
        print_json(result.summary())
        return
    say(taxonomy_tree(result.taxonomy, max_labels=12))
    for line in result.notes:
        say(f"[yellow]note:[/] {line}")
    if result.comparison is not None:
        say(
            f"agreement with {reference}: ARI {result.comparison.ari:.3f}, NMI {result.comparison.nmi:.3f} "
            f"over {result.comparison.common} labels"
        )
    say(f"[green]wrote[/] {out}")
