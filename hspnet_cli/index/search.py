"""Searching an index by text, image or an indexed path.

* ``--like PATH``: the stored vector of an indexed image (``index.reconstruct``; IVF indexes get
  their direct map first; for PQ indexes the vector is the compressed approximation). The
  image itself is among the hits, normally first with a score of about 1.
* ``--image FILE``: the image through the query model's evaluation transform and
  ``Scorer.embed``.
* ``--text "..."``: a text that names one of the query model's labels is that label's feature
  (for a trained checkpoint or export, the learned T* the tagger scores with); any other text
  goes through CLIP's text tower on the zero-shot prompt ``"a photo of a {}."``
  (``--no-label-match`` forces that for label names too). Checkpoints carry the text tower
  (fetched by name, or stored when it cannot be); exports drop it and answer only label names.

The query model is ``--model`` (a checkpoint, run folder or ckpt / TorchScript export),
``--clip-model M --pretrained P`` (plain CLIP), or, when neither is given, the model the index
records when its description names one (``zero-shot M/P``, ``checkpoint PATH (...)``,
``export PATH (...)``). Query and index dims must agree; a different model description is a
warning (embeddings of different models are not comparable).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.errors import UserError
from hspnet_cli.index.build import set_search_params
from hspnet_cli.index.store import IndexFiles, load_index, normalize_rows

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
        return {"rank": self.rank, "id": self.id, "path": self.path, "score": round(self.score, 6),
                "file": str(self.file)}


def _query_taxonomy() -> Any:
    from hspnet_cli.taxonomy import taxonomy_from_dict

    return taxonomy_from_dict({"name": "query", "labels": ["query"], "groups": {"all": ["query"]}},
                              source="<search>")


def query_scorer(idx: IndexFiles, model: str | Path | None = None, clip_model: str | None = None,
                 pretrained: str | None = None, device: str = "cpu") -> Any:
    """The scorer that encodes queries (see the module docstring for the choice)."""
    from hspnet_cli.inference import load_scorer, zero_shot

    if model is not None and clip_model is not None:
        raise UserError("give --model or --clip-model/--pretrained, not both")
    if model is not None:
        return load_scorer(model, device=device)
    if clip_model is None:
        described = str(idx.meta.get("model", ""))
        found = re.match(r"zero-shot (\S+)/(\S+)$", described)
        if found:
            clip_model, pretrained = found.group(1), found.group(2)
        else:
            found = re.match(r"(?:checkpoint|export) (.+?) \(", described)
            if found and Path(found.group(1)).exists():
                return load_scorer(found.group(1), device=device)
            raise UserError(f"{idx.path}: made by '{described}', which hspnet cannot load by itself; give the "
                            "model with --model FILE or --clip-model M --pretrained P")
    tag = None if pretrained is None or str(pretrained).lower() in ("none", "random", "") else pretrained
    return zero_shot(_query_taxonomy(), clip_model, tag, device=device, template=PROMPT)


def _check_dim(vec: np.ndarray, idx: IndexFiles, scorer: Any) -> None:
    if vec.shape[-1] != idx.dim:
        raise UserError(f"the query model '{scorer.description}' makes {vec.shape[-1]}-dim embeddings but index "
                        f"{idx.path} holds {idx.dim}-dim ones from '{idx.meta.get('model')}'; query with that model")
    if scorer.description != idx.meta.get("model"):
        log.warning("query model '%s' is not the index's model '%s': scores compare different embeddings",
                    scorer.description, idx.meta.get("model"))


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
    return next((i for i, spec in enumerate(scorer.taxonomy.labels) if wanted in (norm(spec.name), norm(spec.text))),
                None)


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
        raise UserError(f"text search needs a model with its text tower, and '{scorer.description}' has none "
                        "(exports drop it; only its label names can be searched); use the training checkpoint "
                        f"(--model run/best.ckpt) or --clip-model/--pretrained of the model that made the index "
                        f"('{idx.meta.get('model')}')")
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


def like_query(idx: IndexFiles, path: str) -> np.ndarray:
    """(1, D) stored vector of an indexed path (as listed in the index, or as a file path)."""
    import faiss

    wanted = path.replace(os.sep, "/")
    try:
        i = idx.paths.index(wanted)
    except ValueError:
        try:
            i = idx.paths.index(Path(os.path.relpath(Path(path).absolute(), idx.images_dir)).as_posix())
        except ValueError:
            raise UserError(f"'{path}' is not in index {idx.path} (paths are relative to {idx.images_dir})") from None
    try:
        ivf = faiss.extract_index_ivf(idx.index)
    except RuntimeError:
        ivf = None
    if ivf is not None:
        ivf.make_direct_map()
    try:
        vec = idx.index.reconstruct(i).reshape(1, -1)
    except RuntimeError as exc:
        raise UserError(f"{idx.path}: this index type cannot give back stored vectors "
                        f"({str(exc).strip().splitlines()[-1]}); query with --image instead") from None
    return normalize_rows(np.ascontiguousarray(vec, dtype=np.float32), idx.path)


def search(idx: IndexFiles, query: np.ndarray, k: int = 10) -> list[Hit]:
    """Top-``k`` hits of a (1, D) unit query, best first."""
    if k < 1:
        raise UserError(f"--k must be at least 1; got {k}")
    set_search_params(idx.index, str(idx.meta.get("search_params", "")))
    scores, ids = idx.index.search(query, min(k, idx.index.ntotal))
    return [Hit(rank=r + 1, id=int(i), path=idx.paths[int(i)], score=float(s), file=idx.images_dir / idx.paths[int(i)])
            for r, (s, i) in enumerate(zip(scores[0], ids[0])) if i >= 0]


def copy_hits(hits: list[Hit], out_dir: Path) -> list[Path]:
    """Copy the hit files into ``out_dir`` as ``<rank>_<name>``; every copy is atomic.

    Raises:
        UserError: A hit file is missing (nothing is copied then).
    """
    missing = [h.file for h in hits if not h.file.is_file()]
    if missing:
        raise UserError(f"{len(missing)} hit file(s) are missing, e.g. {missing[0]}; nothing copied "
                        "(has the images folder moved?)")
    out_dir.mkdir(parents=True, exist_ok=True)
    width = max(2, len(str(len(hits))))
    written = []
    for h in hits:
        target = out_dir / f"{h.rank:0{width}d}_{h.file.name}"
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=out_dir)
        os.close(fd)
        try:
            shutil.copyfile(h.file, tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(target)
    return written


def run_search(index_path: str | os.PathLike, *, text: str | None = None, image: str | os.PathLike | None = None,
               like: str | None = None, k: int = 10, model: str | Path | None = None, clip_model: str | None = None,
               pretrained: str | None = None, device: str = "cpu",
               match_labels: bool = True) -> tuple[IndexFiles, list[Hit], str]:
    """Load an index, encode the one query given, search: (index, hits, query description).

    ``match_labels``: a ``text`` naming one of the model's labels uses that label's feature
    (see :func:`text_query`).
    """
    given = [name for name, v in (("--text", text), ("--image", image), ("--like", like)) if v is not None]
    if len(given) != 1:
        got = f" (got {', '.join(given)})" if given else ""
        raise UserError(f"give exactly one query: --text, --image or --like{got}")
    if k < 1:
        raise UserError(f"--k must be at least 1; got {k}")
    idx = load_index(index_path)
    if like is not None:
        return idx, search(idx, like_query(idx, like), k), f"like {like}"
    scorer = query_scorer(idx, model=model, clip_model=clip_model, pretrained=pretrained, device=device)
    if text is not None:
        vec, how = text_query(idx, scorer, text, match_labels)
        return idx, search(idx, vec, k), f"text '{text}' ({how})"
    return idx, search(idx, image_query(idx, scorer, Path(image)), k), f"image {image}"
