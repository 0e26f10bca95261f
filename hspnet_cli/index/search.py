"""Searching an index by text, image or an indexed path.

* ``--like PATH``: the stored vector of an indexed image (``index.reconstruct``; IVF indexes get
  their direct map first; for PQ indexes the vector is the compressed approximation). The
  image itself is left out of the hits (it would be hit 1 with a score of about 1) unless
  ``include_self``. PATH is the path as listed in the index, a file path, or a path relative
  to the images folder of any tags file added to the index (``index add`` may move the root).
* ``--image FILE``: the image through the query model's evaluation transform and
  ``Scorer.embed``.
* ``--text "..."``: a text that names one of the query model's labels is that label's feature
  (for a trained checkpoint or export, the learned T* the tagger scores with); any other text
  goes through CLIP's text tower on the zero-shot prompt ``"a photo of a {}."``
  (``--no-label-match`` forces that for label names too). Checkpoints carry the text tower
  (fetched by name, or stored when it cannot be); exports drop it and answer only label names.

The query model is ``--checkpoint`` (a checkpoint, run folder or ckpt / TorchScript export),
``--clip-model M --pretrained P`` (plain CLIP), or, when neither is given, the model the index
records when its description names one (``zero-shot M/P``, ``checkpoint PATH (...)``,
``export PATH (...)``). Query and index dims must agree; a different model is a warning
(embeddings of different models are not comparable). Models are compared by content: the
scorer fingerprint the tagger recorded (label features, temperature, input size, labels), or
the same file behind two spellings of its path; never by the path's spelling.

``--copy-to DIR`` copies only files under the index's root (the paths file is checked when the
index is loaded), each to ``DIR/<rank>_<file name>`` (a name, never a path, so nothing lands
outside DIR); a file already there is refused before anything is copied, unless ``overwrite``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import output_errors
from hspnet_cli.index.build import set_search_params
from hspnet_cli.index.files import IndexFiles, normalize_rows
from hspnet_cli.index.store import load_index
from hspnet_cli.tagsfile.escape import escape, unescape

log = logging.getLogger(__name__)

PROMPT = "a photo of a {}."


@dataclass
class Hit:
    rank: int
    id: int
    path: str
    score: float
    file: Path

    def to_dict(self) -> dict[str, Any]:
        # Escaped as in tags.csv: valid text for any file name (tagging.text_escape).
        return {
            "rank": self.rank,
            "id": self.id,
            "path": escape(self.path),
            "score": round(self.score, 6),
            "file": escape(str(self.file)),
        }


def _query_taxonomy() -> Any:
    from hspnet_cli.taxonomy import taxonomy_from_dict

    return taxonomy_from_dict({"name": "query", "labels": ["query"], "groups": {"all": ["query"]}}, source="<search>")


def query_scorer(
    idx: IndexFiles,
    model: str | Path | None = None,
    clip_model: str | None = None,
    pretrained: str | None = None,
    device: str = "cpu",
) -> Any:
    """The scorer that encodes queries (see the module docstring for the choice); ``model`` is
    the command's ``--checkpoint``."""
    from hspnet_cli.scoring.scorer import choose_scorer

    if model is not None and clip_model is not None:
        raise UserError("give --checkpoint or --clip-model/--pretrained, not both")
    if model is None and clip_model is None:
        described = str(idx.meta.get("model", ""))
        found = re.match(r"zero-shot (\S+)/(\S+)$", described)
        if found:
            clip_model, pretrained = found.group(1), found.group(2)
        else:
            found = re.match(r"(?:checkpoint|export) (.+?) \(", described)
            if not found or not Path(found.group(1)).exists():
                raise UserError(
                    f"{idx.path}: made by '{described}', which hspnet cannot load by itself; give the "
                    "model with --checkpoint FILE or --clip-model M --pretrained P"
                )
            model = found.group(1)
    tag = "none" if pretrained is None or str(pretrained).lower() in ("none", "random", "") else pretrained
    zero = model is None
    return choose_scorer(
        model,
        zero_shot=zero,
        taxonomy=_query_taxonomy() if zero else None,
        clip_model=str(clip_model),
        pretrained=tag,
        device=device,
    )


def same_model(scorer: Any, idx: IndexFiles) -> bool:
    """True when ``scorer`` is the model that made the index's embeddings, judged by content: equal
    descriptions, the fingerprint recorded at tagging time, or one file behind two path spellings."""
    indexed = str(idx.meta.get("model", ""))
    if scorer.description == indexed:
        return True
    recorded = idx.meta.get("model_fingerprint")
    if recorded and getattr(scorer, "label_features", None) is not None:
        from hspnet_cli.tagging.run import scorer_fingerprint

        with contextlib.suppress(Exception):  # a scorer without the fingerprinted facts: fall through
            if scorer_fingerprint(scorer) == recorded:
                return True
    pattern = re.compile(r"(checkpoint|export) (.+?) (\(.*\))$")
    a, b = pattern.match(scorer.description), pattern.match(indexed)
    if a and b and (a.group(1), a.group(3)) == (b.group(1), b.group(3)):
        with contextlib.suppress(OSError):
            return os.path.samefile(a.group(2), b.group(2)) or _same_bytes(Path(a.group(2)), Path(b.group(2)))
    return False


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    from hspnet_cli.data.split_io import sha256_file

    return sha256_file(a) == sha256_file(b)


def _check_dim(vec: np.ndarray, idx: IndexFiles, scorer: Any) -> None:
    if vec.shape[-1] != idx.dim:
        raise UserError(
            f"the query model '{scorer.description}' makes {vec.shape[-1]}-dim embeddings but index "
            f"{idx.path} holds {idx.dim}-dim ones from '{idx.meta.get('model')}'; query with that model"
        )
    if not same_model(scorer, idx):
        log.warning(
            "query model '%s' is not the index's model '%s': scores compare different embeddings",
            scorer.description,
            idx.meta.get("model"),
        )


def text_prompt(text: str) -> str:
    """The text the tower encodes: a bare name goes into ``PROMPT``; a phrase that already reads
    as a caption (starts with an article, or "photo/picture/image of") is used as it is, so
    "a dog on a beach" does not become "a photo of a a dog on a beach."."""
    text = " ".join(text.split())
    lowered = text.lower()
    if re.match(r"(a|an|the)\s", lowered) or re.match(r"(photo|picture|image|drawing)s? of\s", lowered):
        return text
    return PROMPT.format(text)


def matched_label(scorer: Any, text: str) -> int | None:
    """Index of the scorer's label that ``text`` names (its name or prompt text, any case), else None."""

    def norm(s: str) -> str:
        return " ".join(s.lower().replace("_", " ").split())

    wanted = norm(text)
    return next(
        (i for i, spec in enumerate(scorer.taxonomy.labels) if wanted in (norm(spec.name), norm(spec.text))), None
    )


def text_query(idx: IndexFiles, scorer: Any, text: str, match_labels: bool = True) -> tuple[np.ndarray, str]:
    """(1, D) unit query vector for ``text``, and how it was made.

    A text naming one of the model's labels is that label's feature: for a trained model the
    learned T* the tagger scores with, so the hits are the images it finds most like the label
    (a plain prompt through the frozen tower knows nothing of the training). Any other text,
    or every text with ``match_labels=False``, goes through the text tower on ``PROMPT``.
    """
    label = matched_label(scorer, text) if match_labels else None
    if label is not None:
        vec = scorer.label_features[label].detach().float().cpu().numpy().reshape(1, -1)
        how = f"the model's feature of label '{scorer.taxonomy.labels[label].name}'"
    elif scorer.text_encoder is None:
        raise UserError(
            f"text search needs a model with its text tower, and '{scorer.description}' has none "
            "(exports drop it; only its label names can be searched); use the training checkpoint "
            f"(--checkpoint run/best.ckpt) or --clip-model/--pretrained of the model that made the index "
            f"('{idx.meta.get('model')}')"
        )
    else:
        prompt = text_prompt(text)
        vec = scorer.text_encoder([prompt]).detach().float().cpu().numpy().reshape(1, -1)
        how = f"text tower on '{prompt}'"
    _check_dim(vec, idx, scorer)
    return normalize_rows(np.ascontiguousarray(vec, dtype=np.float32), "--text query"), how


def image_query(idx: IndexFiles, scorer: Any, image: Path) -> np.ndarray:
    """(1, D) unit query vector for an image file."""
    from PIL import Image, UnidentifiedImageError

    if not image.is_file():
        raise UserError(f"{image}: query image not found")
    try:
        with Image.open(image) as im:
            tensor = scorer.transform(im.convert("RGB")).unsqueeze(0)
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{image}: not a readable image ({exc})") from None
    vec = scorer.embed(tensor).detach().float().cpu().numpy().reshape(1, -1)
    _check_dim(vec, idx, scorer)
    return normalize_rows(np.ascontiguousarray(vec, dtype=np.float32), image)


def like_id(idx: IndexFiles, path: str) -> int:
    """The id of an indexed image: ``path`` as listed in the index, as a file path, or relative to
    the images folder of one of the tags files added to the index (when exactly one matches)."""
    wanted = path.replace(os.sep, "/")
    if hasattr(idx.paths, "find"):  # a sharded build's on-disk keys: scanned, no dict
        found_keys = sorted(set(idx.paths.find(wanted)) | set(idx.paths.find(unescape(wanted))))
        if len(found_keys) == 1:
            return found_keys[0]
        if found_keys:
            raise UserError(f"'{path}' is the key of {len(found_keys)} indexed vectors; --like needs a unique key")
        raise UserError(f"'{path}' is not a key of index {idx.path}")
    ids = {p: i for i, p in enumerate(idx.paths)}
    for form in (wanted, unescape(wanted)):  # as typed, or copied from tags.csv / --json output
        if form in ids:
            return ids[form]
    candidates = {Path(os.path.relpath(Path(path).absolute(), idx.images_dir)).as_posix()}
    for source in idx.meta.get("sources", []):
        root = source.get("images_dir") if isinstance(source, dict) else None
        if root:
            candidates.add(Path(os.path.relpath(Path(root) / wanted, idx.images_dir)).as_posix())
    found = sorted({ids[c] for c in candidates if c in ids})
    if len(found) > 1:
        raise UserError(
            f"'{path}' names {len(found)} indexed images ({', '.join(idx.paths[i] for i in found[:3])}); "
            f"give the path as listed in the index (relative to {idx.images_dir})"
        )
    if not found:
        raise UserError(f"'{path}' is not in index {idx.path} (paths are relative to {idx.images_dir})")
    return found[0]


def like_query(idx: IndexFiles, path: str) -> np.ndarray:
    """(1, D) stored vector of an indexed path (see :func:`like_id`)."""
    import faiss

    i = like_id(idx, path)
    if idx.meta.get("keys_file"):  # a sharded build: the original vector, from its shard
        from hspnet_cli.index.ondisk import source_vector

        vec = source_vector(idx, i)
        if vec is not None:
            return vec
    try:
        ivf = faiss.extract_index_ivf(idx.index)
    except RuntimeError:
        ivf = None
    if ivf is not None:
        ivf.make_direct_map()
    try:
        vec = idx.index.reconstruct(i).reshape(1, -1)
    except RuntimeError as exc:
        raise UserError(
            f"{idx.path}: this index type cannot give back stored vectors "
            f"({str(exc).strip().splitlines()[-1]}); query with --image instead"
        ) from None
    return normalize_rows(np.ascontiguousarray(vec, dtype=np.float32), idx.path)


def search(idx: IndexFiles, query: np.ndarray, k: int = 10, exclude: int | None = None) -> list[Hit]:
    """Top-``k`` hits of a (1, D) unit query, best first; id ``exclude`` (the ``--like`` image) left out."""
    if k < 1:
        raise UserError(f"--k must be at least 1; got {k}")
    set_search_params(idx.index, str(idx.meta.get("search_params", "")))
    extra = 1 if exclude is not None else 0
    scores, ids = idx.index.search(query, min(k + extra, idx.index.ntotal))
    kept = [(float(s), int(i)) for s, i in zip(scores[0], ids[0]) if i >= 0 and i != exclude][:k]
    return [
        Hit(rank=r + 1, id=i, path=idx.paths[i], score=s, file=idx.images_dir / idx.paths[i])
        for r, (s, i) in enumerate(kept)
    ]


def copy_hits(hits: list[Hit], out_dir: Path, overwrite: bool = False) -> list[Path]:
    """Copy the hit files into ``out_dir`` as ``<rank>_<name>``; every copy is atomic.

    The sources are files under the index's root (its paths are checked when it is loaded);
    each target is a direct child of ``out_dir`` (a file name is used, never a path).

    Raises:
        UserError: A hit file is missing, or (without ``overwrite``) a target exists already;
            nothing is copied then. A full disk or permissions: one line naming the file.
    """
    from hspnet_cli.index.files import path_problem
    from hspnet_cli.sources.fetch import is_fetchable

    # Hits from object storage or tar shards (hspnet tag SOURCE): fetched, not copied.
    remote = {h.rank for h in hits if not h.file.is_file() and is_fetchable(str(h.file.parent), h.path)}
    # Anything else must be a path inside the index's root (a sharded index's keys are never
    # checked when it loads).
    outside = [h.path for h in hits if h.rank not in remote and (path_problem(h.path) is not None or "://" in h.path)]
    if outside:
        raise UserError(
            f"hit '{outside[0]}' is not a file path inside the index's images folder; nothing "
            "copied (fetch such keys with your storage tool)"
        )
    missing = [h.file for h in hits if h.rank not in remote and not h.file.is_file()]
    if missing:
        raise UserError(
            f"{len(missing)} hit file(s) are missing, e.g. {missing[0]}; nothing copied (has the images folder moved?)"
        )
    width = max(2, len(str(len(hits))))
    targets = [out_dir / f"{h.rank:0{width}d}_{h.file.name.rsplit('#', 1)[-1]}" for h in hits]
    taken = [t for t in targets if os.path.lexists(t)]
    if taken and not overwrite:
        raise UserError(
            f"{taken[0]}: exists already ({len(taken)} of the {len(targets)} copies would replace a "
            "file); nothing copied: use an empty --copy-to folder, or --overwrite to replace them"
        )
    with output_errors(out_dir, "--copy-to folder"):
        out_dir.mkdir(parents=True, exist_ok=True)
    for h, target in zip(hits, targets):
        with output_errors(target, "copy of a hit"):
            if h.rank in remote:
                _fetch_one(h, target, overwrite)
            else:
                _copy_one(h.file, target, overwrite)
    return targets


def _fetch_one(hit: Hit, target: Path, overwrite: bool) -> None:
    """Write a hit held in object storage or a tar shard to ``target`` (atomic, as a copy)."""
    from hspnet_cli.sources.fetch import fetch_bytes

    root = str(hit.file)[: len(str(hit.file)) - len(hit.path)].rstrip("/")
    data = fetch_bytes(root, hit.path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    try:
        _copy_one(Path(tmp), target, overwrite)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _copy_one(source: Path, target: Path, overwrite: bool) -> None:
    """Copy through a temporary file; the final step replaces ``target`` (overwrite) or links the
    copy in only if nothing appeared there meanwhile (a link never follows a symlink at ``target``)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o644)
        if overwrite:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise UserError(
                    f"{target}: appeared while copying; nothing replaced (--overwrite replaces it)"
                ) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def run_search(
    index_path: str | os.PathLike,
    *,
    text: str | None = None,
    image: str | os.PathLike | None = None,
    like: str | None = None,
    k: int = 10,
    model: str | Path | None = None,
    clip_model: str | None = None,
    pretrained: str | None = None,
    device: str = "cpu",
    match_labels: bool = True,
    include_self: bool = False,
) -> tuple[IndexFiles, list[Hit], str]:
    """Load an index, encode the one query given, search: (index, hits, query description).

    ``match_labels``: a ``text`` naming one of the model's labels uses that label's feature
    (see :func:`text_query`). ``include_self``: keep the ``like`` image among its own hits.
    """
    given = [name for name, v in (("--text", text), ("--image", image), ("--like", like)) if v is not None]
    if len(given) != 1:
        got = f" (got {', '.join(given)})" if given else ""
        raise UserError(f"give exactly one query: --text, --image or --like{got}")
    if k < 1:
        raise UserError(f"--k must be at least 1; got {k}")
    idx = load_index(index_path)
    if like is not None:
        return (
            idx,
            search(idx, like_query(idx, like), k, exclude=None if include_self else like_id(idx, like)),
            f"like {like}",
        )
    scorer = query_scorer(idx, model=model, clip_model=clip_model, pretrained=pretrained, device=device)
    if text is not None:
        vec, how = text_query(idx, scorer, text, match_labels)
        return idx, search(idx, vec, k), f"text '{text}' ({how})"
    return idx, search(idx, image_query(idx, scorer, Path(image)), k), f"image {image}"
