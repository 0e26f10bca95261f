"""``export_labels``: a tag output in, one labeling tool's import files out."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hspnet_cli.core.errors import UserError
from hspnet_cli.labeltools import writers
from hspnet_cli.labeltools.rows import ImageRefs, TagRow, iter_rows
from hspnet_cli.tagsfile.listfile import listed_paths
from hspnet_cli.tagsfile.reader import read_tags_output

TARGETS = ("label-studio", "cvat", "hf", "fiftyone")
# How each tool finds images when no reference option is given (see labeltools.rows).
_DEFAULT_REFS = {"label-studio": "local-files", "cvat": "relative", "hf": "relative", "fiftyone": "absolute"}


def _model_version(manifest: dict[str, Any]) -> str:
    model = manifest.get("model") if isinstance(manifest.get("model"), dict) else {}
    name = str(model.get("scorer", "hspnet"))
    digest = str(model.get("fingerprint", ""))[:12]
    return f"{name} @{digest}" if digest else name


def _counted(rows: Iterator[TagRow], counts: dict[str, int], advance: Callable[[int], Any] | None) -> Iterator[TagRow]:
    for row in rows:
        counts["rows"] += 1
        counts["tags"] += len(row.tags)
        counts["untagged"] += not row.tags
        if advance is not None:
            advance(1)
        yield row


def export_labels(
    tags: str | Path,
    to: str,
    out: str | Path,
    *,
    url_prefix: str | None = None,
    absolute: bool = False,
    local_files_root: str | Path | None = None,
    images_dir: str | Path | None = None,
    image_sizes: bool = True,
    overwrite: bool = False,
    only: str | Path | None = None,
    progress: Callable[[int], Callable[[int], Any]] | None = None,
) -> dict[str, Any]:
    """Write the tags of an ``hspnet tag`` output as ``to``'s pre-annotations.

    Args:
        tags: ``tags.csv`` / ``tags.jsonl`` of ``hspnet tag`` or ``hspnet index merge`` (with manifest).
        to: One of :data:`TARGETS`.
        out: Tasks JSON (label-studio), annotations XML (cvat), ``metadata.jsonl`` (hf), or a folder (fiftyone).
        url_prefix: Reference images as this prefix + path (``https://...``, ``s3://bucket/...``).
        absolute: Reference images by absolute local path.
        local_files_root: Label Studio: reference images through its local file serving, relative to this
            root (default: the images folder's parent, the narrowest root Label Studio accepts with a
            Local Storage for the images folder; never ``/``).
        images_dir: The images folder (default: the tag run's).
        image_sizes: CVAT: read width/height from each image's header when the image is found.
        overwrite: Replace existing output files.
        only: A list file (what ``hspnet tag --list`` reads and ``hspnet select`` writes): write
            only these images, in the tag output's order.
        progress: Called once with the number of rows; returns a function called with 1 per
            row written (a progress bar), or None.

    Returns:
        A summary: files written, rows, tags, untagged rows, the image reference style, seconds.

    Raises:
        UserError: Unknown target, existing outputs without ``overwrite``, options that do not fit
            the target, or a malformed tag output.
    """
    if to not in TARGETS:
        raise UserError(f"--to must be one of {', '.join(TARGETS)}; got '{to}'")
    if local_files_root is not None and to != "label-studio":
        raise UserError("--local-files-root is Label Studio's local file serving; use it with --to label-studio")
    if to == "hf" and (url_prefix or absolute):
        raise UserError(
            "Hugging Face imagefolder takes file names relative to metadata.jsonl; leave out "
            "--url-prefix / --absolute with --to hf"
        )
    out = Path(out)
    source = read_tags_output(tags)
    kind = source.fingerprint.get("source_kind")  # set by hspnet tag SOURCE --format parquet
    if kind == "tar":
        raise UserError(
            f"{tags}: its images are members of tar shards (keys SHARD#MEMBER), which labeling tools "
            "cannot open; extract them to a folder, tag that folder, and export its tags"
        )
    if kind == "url" and images_dir is None:
        raise UserError(
            f"{tags}: its images are in object storage ({source.fingerprint.get('source')}); labeling "
            "tools read local files: copy the prefix to a folder (e.g. aws s3 sync) and pass it as "
            "--images FOLDER"
        )
    images = Path(images_dir).expanduser().absolute() if images_dir is not None else source.images_dir
    refs = ImageRefs.choose(images, _DEFAULT_REFS[to], url_prefix, absolute, local_files_root)
    targets = {
        "label-studio": [out, out.with_name(f"{out.stem}.labeling-config.xml")],
        "cvat": [out],
        "hf": [out],
        "fiftyone": [out / "labels.json", out / "data.json"],
    }[to]
    if to == "fiftyone" and out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file; FiftyOne's layout is a folder (labels.json + data.json)")
    if to != "fiftyone" and out.is_dir():
        raise UserError(f"{out}: is a folder; give the file to write (e.g. {out / 'tasks.json'})")
    existing = [p for p in targets if p.exists()]
    if existing and not overwrite:
        raise UserError(f"{existing[0]}: exists; pass --overwrite to replace it")
    manifest = source.manifest
    labels = [str(x) for x in manifest.get("labels") or []]
    groups = manifest.get("groups") if isinstance(manifest.get("groups"), dict) else {}
    if not labels:
        raise UserError(f"{source.file}: its manifest lists no labels; rerun hspnet tag with --overwrite")
    counts = {"rows": 0, "tags": 0, "untagged": 0}
    wanted = None if only is None else set(listed_paths(only, source.images_dir, "--only", "the tagged images folder"))
    rows: Iterator[TagRow] = iter_rows(source, wanted, to)
    n_rows = source.n if wanted is None else len(wanted)
    rows = _counted(rows, counts, progress(n_rows) if progress is not None else None)
    start = time.perf_counter()
    if to == "label-studio":
        files = writers.write_label_studio(out, rows, refs, labels, groups, _model_version(manifest))
    elif to == "cvat":
        files = writers.write_cvat(
            out, rows, refs, labels, n_rows, f"hspnet tags: {source.file.name}", sizes=image_sizes
        )
    elif to == "hf":
        files = writers.write_hf(out, rows, refs)
    else:
        files = writers.write_fiftyone(out, rows, refs, labels)
    missing = n_rows - counts["rows"] if only is not None else 0
    return {
        "to": to,
        "source": str(source.file),
        "not_in_tags": missing,
        "files": {k: str(v) for k, v in files.items()},
        "images_dir": str(images),
        "image_refs": refs.describe(),
        "labels": len(labels),
        **counts,
        "model_version": _model_version(manifest),
        "thresholds": source.threshold_source,
        "seconds": round(time.perf_counter() - start, 3),
        **(
            {
                "serve": "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true "
                f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={refs.prefix}",
                "local_storage": images.as_posix(),
            }
            if refs.mode == "local-files"
            else {}
        ),
    }
