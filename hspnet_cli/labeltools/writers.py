"""One writer per labeling tool: streamed, atomic (temp file + rename), one row at a time.

Every writer takes the tag output's label order and groups, the rows, and an
:class:`~hspnet_cli.labeltools.rows.ImageRefs`, and writes the tool's own import format:

- Label Studio: a JSON list of tasks, ``{"data": {"image": REF, "hspnet_path": PATH,
  "hspnet_scores": "cat 0.97, sofa 0.63"}, "predictions": [{"model_version", "score", "result":
  [{"from_name": "labels", "to_name": "image", "type": "choices", "value": {"choices": [...]},
  "meta": {"scores": {label: prob}}}]}]}``, and the labeling config (a multi-choice ``Choices``
  over every label, hinted with its group, and a header showing the model's scores).
  ``hspnet_path`` travels through Label Studio untouched and comes back in both exports, so the
  reader maps answers to the tag run's image keys whatever the image reference was.
- CVAT for images 1.1: ``<annotations>`` with ``<meta>`` declaring every label (type ``tag``,
  a number attribute ``score``) and one ``<image>`` per row with ``<tag label source="auto">``.
- Hugging Face imagefolder: ``metadata.jsonl`` beside (or above) the images, ``file_name``
  relative to it, ``labels``, ``scores``, ``groups``.
- FiftyOne image classification dataset: ``labels.json`` (``classes`` + per-sample lists of
  ``{"label": index, "confidence": prob}``) and ``data.json`` (image key -> image path), so
  no image is copied; FiftyOne reads it with ``data_path="data.json"``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO
from xml.sax.saxutils import escape, quoteattr

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import atomic_write
from hspnet_cli.labeltools.rows import ImageRefs, TagRow

FROM_NAME, TO_NAME = "labels", "image"


def labeling_config(labels: list[str], groups: dict[str, list[str]]) -> str:
    """Label Studio labeling config XML: the image, the model's scores, one multi-choice list."""
    group_of = {label: g for g, members in groups.items() for label in members}
    choices = "\n".join(
        f"    <Choice value={quoteattr(name)} hint={quoteattr('group: ' + group_of.get(name, '-'))}/>"
        for name in labels
    )
    return (
        f'<View>\n  <Image name="{TO_NAME}" value="$image"/>\n'
        '  <Header value="model: $hspnet_scores" size="6"/>\n'
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="multiple" showInline="true">\n'
        f"{choices}\n  </Choices>\n</View>\n"
    )


def _ls_task(row: TagRow, ref: str, model_version: str) -> dict:
    scores = dict(zip(row.tags, row.scores))
    task: dict = {
        "data": {
            "image": ref,
            "hspnet_path": row.path,
            "hspnet_scores": ", ".join(f"{t} {s:.2f}" for t, s in scores.items()) or "no tag",
        }
    }
    if row.tags:
        # The task's score is its least sure choice: sorted by it, reviewers see doubtful images first.
        task["predictions"] = [
            {
                "model_version": model_version,
                "score": round(min(row.scores), 4),
                "result": [
                    {
                        "from_name": FROM_NAME,
                        "to_name": TO_NAME,
                        "type": "choices",
                        "value": {"choices": list(row.tags)},
                        "meta": {"scores": scores},
                    }
                ],
            }
        ]
    return task


def write_label_studio(
    out: Path,
    rows: Iterable[TagRow],
    refs: ImageRefs,
    labels: list[str],
    groups: dict[str, list[str]],
    model_version: str,
) -> dict[str, Path]:
    """Tasks JSON at ``out`` and its labeling config at ``out`` with ``.labeling-config.xml``."""
    config = out.with_name(f"{out.stem}.labeling-config.xml")
    with atomic_write(out) as fh:
        fh.write("[")
        for i, row in enumerate(rows):
            fh.write(
                ("\n" if i == 0 else ",\n")
                + json.dumps(_ls_task(row, refs(row.path), model_version), ensure_ascii=False)
            )
        fh.write("\n]\n")
    with atomic_write(config) as fh:
        fh.write(labeling_config(labels, groups))
    return {"tasks": out, "config": config}


def _cvat_meta(fh: IO[str], labels: list[str], count: int, name: str) -> None:
    fh.write(
        '<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n  <meta>\n'
        f"    <task>\n      <id>0</id>\n      <name>{escape(name)}</name>\n      <size>{count}</size>\n"
        "      <mode>annotation</mode>\n      <labels>\n"
    )
    for label in labels:
        fh.write(
            f"        <label>\n          <name>{escape(label)}</name>\n          <type>tag</type>\n"
            "          <attributes>\n            <attribute>\n              <name>score</name>\n"
            "              <mutable>True</mutable>\n              <input_type>number</input_type>\n"
            "              <default_value>0</default_value>\n              <values>0\n1\n0.0001</values>\n"
            "            </attribute>\n          </attributes>\n        </label>\n"
        )
    fh.write("      </labels>\n    </task>\n  </meta>\n")


def write_cvat(
    out: Path, rows: Iterable[TagRow], refs: ImageRefs, labels: list[str], count: int, name: str, sizes: bool = True
) -> dict[str, Path]:
    """CVAT for images 1.1 XML; ``sizes`` reads each image's width/height from its header when found."""
    with atomic_write(out) as fh:
        _cvat_meta(fh, labels, count, name)
        for i, row in enumerate(rows):
            size = _image_size(refs.images_dir / row.path) if sizes else None
            dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
            fh.write(f'  <image id="{i}" name={quoteattr(refs(row.path))}{dims}>\n')
            for tag, score in zip(row.tags, row.scores):
                fh.write(
                    f'    <tag label={quoteattr(tag)} source="auto">\n'
                    f'      <attribute name="score">{score:.4f}</attribute>\n    </tag>\n'
                )
            fh.write("  </image>\n")
        fh.write("</annotations>\n")
    return {"annotations": out}


def _image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the image header (PIL reads no pixels here), None when unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # noqa: BLE001 - a missing or broken image just goes without a size
        return None


def write_hf(out: Path, rows: Iterable[TagRow], refs: ImageRefs) -> dict[str, Path]:
    """``metadata.jsonl`` for ``datasets.load_dataset("imagefolder", data_dir=out.parent)``.

    Raises:
        UserError: ``out`` is not at or above the images (imagefolder looks images up under
            the metadata file's folder).
    """
    if out.name != "metadata.jsonl":
        raise UserError(f"{out}: Hugging Face imagefolder reads a file named metadata.jsonl; name the output so")
    base = out.parent.absolute()
    if not refs.images_dir.is_relative_to(base):
        raise UserError(
            f"{out}: imagefolder finds images under the metadata file's folder, but the images are in "
            f"{refs.images_dir}; write {refs.images_dir / 'metadata.jsonl'} (or a folder above it)"
        )
    offset = Path(os.path.relpath(refs.images_dir, base)).as_posix()
    with atomic_write(out) as fh:
        for row in rows:
            name = row.path if offset == "." else f"{offset}/{row.path}"
            fh.write(
                json.dumps(
                    {"file_name": name, "labels": row.tags, "scores": row.scores, "groups": row.groups},
                    ensure_ascii=False,
                )
                + "\n"
            )
    return {"metadata": out}


def write_fiftyone(out: Path, rows: Iterable[TagRow], refs: ImageRefs, labels: list[str]) -> dict[str, Path]:
    """FiftyOne image classification dataset folder: ``labels.json`` and the ``data.json`` manifest.

    Sample ids are the image keys: ``data.json`` maps each key to its image, ``labels.json``
    holds the key without its extension (FiftyOne drops extensions from ids when it reads a
    manifest), so reading the folder back recovers the tag run's keys.

    Raises:
        UserError: Two images that differ only in their extension (one FiftyOne id).
    """
    index = {name: i for i, name in enumerate(labels)}
    seen: set[str] = set()
    with atomic_write(out / "data.json") as media, atomic_write(out / "labels.json") as targets:
        # Both files are streamed (only the ids are kept, to refuse two images with one id).
        media.write("{")
        targets.write(
            "{"
            + json.dumps("classes")
            + ": "
            + json.dumps(labels, ensure_ascii=False)
            + ", "
            + json.dumps("labels")
            + ": {"
        )
        for row in rows:
            sample = os.path.splitext(row.path)[0]
            if sample in seen:
                raise UserError(
                    f"{row.origin}: FiftyOne ids drop the extension, and another image is also "
                    f"'{sample}'; rename one of them"
                )
            sep = ", " if seen else ""
            seen.add(sample)
            unknown = [t for t in row.tags if t not in index]
            if unknown:  # FiftyOne stores class indices: a tag outside the label list cannot be kept
                raise UserError(
                    f"{row.origin}: tag {unknown[0]!r} is not one of the manifest's labels, so "
                    "FiftyOne's labels.json cannot hold it; was the tags file edited? Tag again"
                )
            found = [{"label": index[t], "confidence": s} for t, s in zip(row.tags, row.scores)]
            media.write(
                sep + json.dumps(row.path, ensure_ascii=False) + ": " + json.dumps(refs(row.path), ensure_ascii=False)
            )
            targets.write(sep + json.dumps(sample, ensure_ascii=False) + ": " + json.dumps(found))
        media.write("}\n")
        targets.write("}}\n")
    return {"labels": out / "labels.json", "data": out / "data.json"}
