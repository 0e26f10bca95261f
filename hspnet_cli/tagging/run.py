"""``tag_images``: tag every image of a folder (or a ``--list``) with a scorer, streaming and resumable.

Flow: discover the items (deterministic order, see :mod:`hspnet_cli.sources.discover`), keep
this shard's share, check the outputs against their manifest (fresh start, resume, already
complete, or refuse), then stream the remaining items through a DataLoader (decoding in
workers, :mod:`hspnet_cli.tagging.decode`) and a batched forward pass, appending each batch's
rows, embeddings and failures and recording progress after it (:mod:`hspnet_cli.tagsfile.writer`).
Memory holds the path list and one or two batches, whatever the number of images.

Exit status convention (used by the CLI): 0 when every image was tagged, 1 when any image
failed to read (they are listed in ``tags.failed.csv``); usage errors are 2 as everywhere.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.locks import output_lock
from hspnet_cli.core.names import LeftOut
from hspnet_cli.sources.discover import PathList, discover_images, image_extensions, read_path_list, shard_items
from hspnet_cli.tagging.chatter import ChatterLog, count_since, log_size
from hspnet_cli.tagging.decode import DEFAULT_DECODE_TIMEOUT, DEFAULT_MAX_PIXELS, TagImages
from hspnet_cli.tagging.gpu_decode import JpegBytesImages, TensorPreprocess, resolve_decode_mode
from hspnet_cli.tagging.scoring import prepare_for_device, tag_batches
from hspnet_cli.tagsfile.escape import TEXT_ESCAPING
from hspnet_cli.tagsfile.writer import (
    MANIFEST_FORMAT,
    OutputPaths,
    TagSelector,
    TagWriter,
    new_manifest,
    read_failures,
    read_json,
    shard_out,
    write_json,
)

log = logging.getLogger(__name__)


@dataclass
class TagSummary:
    """What a tagging run did.

    Attributes:
        items: Input items of this run (this shard's share).
        rows: Rows in the tags file (tagged images), in total.
        failed: Images that could not be read (rows of the failures file), in total.
        resumed_from: Items already done before this invocation (0 for a fresh run).
        processed: Items processed by this invocation.
        seconds: Wall time of this invocation's tagging loop.
        images_per_second: ``processed / seconds``.
        outputs: File role -> path (tags, embeddings, failed, manifest).
        failures: Up to 20 (path, reason) examples from the failures file.
        already_complete: The outputs were complete before this invocation; nothing was done.
        shard: (index, count).
        skipped: Files of the folder that are not images Pillow opens, by extension (folder
            discovery only; the whole folder, before sharding).
        decoder_messages: Lines this invocation added to the decode log (what decoders said).
        decoder_images: Images those lines are about.
        threshold_source: Which thresholds cut the tags (calibrated, given, or uncalibrated 0.5).
    """

    items: int
    rows: int
    failed: int
    resumed_from: int
    processed: int
    seconds: float
    images_per_second: float
    outputs: dict[str, Path]
    failures: list[tuple[str, str]] = field(default_factory=list)
    already_complete: bool = False
    shard: tuple[int, int] = (0, 1)
    skipped: dict[str, int] = field(default_factory=dict)
    decoder_messages: int = 0
    decoder_images: int = 0
    threshold_source: str = ""

    @property
    def exit_code(self) -> int:
        """0 when every image was tagged, 1 when any failed."""
        return 1 if self.failed else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "rows": self.rows,
            "failed": self.failed,
            "resumed_from": self.resumed_from,
            "processed": self.processed,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 2),
            "outputs": {k: str(v) for k, v in self.outputs.items()},
            "failures": [{"path": p, "error": e} for p, e in self.failures],
            "already_complete": self.already_complete,
            "shard": f"{self.shard[0]}/{self.shard[1]}",
            "skipped": dict(self.skipped),
            "decoder_messages": self.decoder_messages,
            "decoder_images": self.decoder_images,
            "threshold_source": self.threshold_source,
            "exit_code": self.exit_code,
        }


def parse_shard(shard: str | tuple[int, int] | None, env: dict[str, str] | None = None) -> tuple[int, int]:
    """``"i/N"`` or (i, N) -> (i, N); None -> torchrun's RANK/WORLD_SIZE when set, else (0, 1)."""
    env = os.environ if env is None else env
    if shard is None:
        if "RANK" in env and "WORLD_SIZE" in env:
            try:
                index, count = int(env["RANK"]), int(env["WORLD_SIZE"])
            except ValueError:
                raise UserError(f"RANK={env['RANK']!r} / WORLD_SIZE={env['WORLD_SIZE']!r} are not integers") from None
        else:
            return 0, 1
    elif isinstance(shard, str):
        parts = shard.split("/")
        try:
            index, count = int(parts[0]), int(parts[1])
            if len(parts) != 2:
                raise ValueError
        except (ValueError, IndexError):
            raise UserError(f"--shard must look like i/N (e.g. 0/4); got '{shard}'") from None
    else:
        index, count = int(shard[0]), int(shard[1])
    if count < 1 or not 0 <= index < count:
        raise UserError(f"shard {index}/{count}: need N >= 1 and 0 <= i < N")
    return index, count


def resolve_thresholds(
    scorer: Any, threshold: float | None = None, thresholds: str | Path | np.ndarray | None = None
) -> tuple[np.ndarray, str]:
    """Per-label thresholds and where they came from.

    Precedence: ``thresholds`` (a calibrate file or an array) > an explicit ``threshold`` >
    thresholds stored in the model (fitted by ``hspnet train`` on a fully labelled validation
    split, or carried into an export) > 0.5, which the phrase calls uncalibrated and says how to fix.
    """
    n = scorer.taxonomy.num_labels
    if thresholds is not None and threshold is not None:
        raise UserError("give --threshold or --thresholds, not both")
    if thresholds is not None:
        if isinstance(thresholds, (str, Path)):
            from hspnet_cli.scoring.thresholds import load_thresholds

            return load_thresholds(thresholds, scorer.taxonomy), f"file {thresholds}"
        arr = np.asarray(thresholds, dtype=np.float32).reshape(-1)
        if arr.shape != (n,):
            raise UserError(f"thresholds: need {n} values (one per label); got {arr.size}")
        return arr, "given per label"
    if threshold is not None:
        if not 0.0 <= float(threshold) <= 1.0:
            raise UserError(f"--threshold is a probability in [0, 1]; got {threshold}")
        return np.full(n, float(threshold), dtype=np.float32), f"--threshold {threshold}"
    stored = getattr(scorer, "thresholds", None)
    if stored is not None:
        return (
            stored.detach().float().cpu().numpy().reshape(n),
            getattr(scorer, "thresholds_source", "") or "stored in the model",
        )
    from hspnet_cli.scoring.thresholds import uncalibrated_note

    return np.full(n, 0.5, dtype=np.float32), uncalibrated_note(_model_path(scorer))


def _model_path(scorer: Any) -> str | None:
    """The model file a scorer came from, for advice (its description starts with it)."""
    words = str(getattr(scorer, "description", "")).split()
    return words[1] if len(words) > 1 and words[0] in ("checkpoint", "export") else None


def scorer_fingerprint(scorer: Any) -> str:
    """A digest of what decides the outputs: label features, temperature, input size, labels."""
    h = hashlib.sha256()
    h.update(scorer.label_features.detach().float().cpu().contiguous().numpy().tobytes())
    h.update(repr((float(scorer.logit_scale), int(scorer.image_size), scorer.taxonomy.label_names)).encode())
    return h.hexdigest()


def _items(images_dir: Path, list_file: str | Path | None, skipped: Counter) -> PathList:
    if list_file is not None:
        left_out = LeftOut(f"--list {list_file}")  # the one rule for names (core.names), counted as skipped
        items = read_path_list(list_file, images_dir, left_out)
        skipped.update(left_out.counts)
    else:
        items = discover_images(images_dir, skipped)
    if len(items) == 0:
        where = (
            f"--list {list_file}"
            if list_file is not None
            else f"{images_dir} (no file with one of the {len(image_extensions())} extensions Pillow opens"
            + (f"; skipped {sum(skipped.values())} other file(s)" if skipped else "")
            + ")"
        )
        raise UserError(f"no images to tag in {where}")
    return items


def _check_existing(paths: OutputPaths, fingerprint: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """The existing manifest when outputs may be resumed / are complete; None to start fresh."""
    if overwrite:
        for p in paths.all():
            if p.is_file():
                p.unlink()
        return None
    if paths.manifest.is_file():
        manifest = read_json(paths.manifest, "tag manifest")
        if manifest.get("format") != MANIFEST_FORMAT:
            raise UserError(f"{paths.manifest}: not an hspnet tag manifest; use another --out or --overwrite")
        # Manifests from before --decode existed were all decoded with PIL on the CPU.
        old = {"decode": "cpu", **manifest.get("fingerprint", {})}
        changed = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
        if changed:
            raise UserError(
                f"{paths.tags}: made by a run with other settings ({', '.join(changed)} changed); rerun "
                "with the same model and options to continue it, or add --overwrite to start over"
            )
        return manifest
    existing = [p for p in paths.data_files().values() if p.exists()]
    if existing:
        raise UserError(
            f"{existing[0]}: exists and has no tag manifest ({paths.manifest.name}); use another --out "
            "or --overwrite to replace it"
        )
    return None


def tags_out_path(out: str | Path, shard: str | tuple[int, int] | None = None) -> Path:
    """The tags file a run with ``--out out --shard shard`` writes (shards get ``.shard-i-of-N``)."""
    return shard_out(out, *parse_shard(shard))


def tag_images(
    images_dir: str | Path,
    out: str | Path,
    scorer: Any,
    *,
    list_file: str | Path | None = None,
    threshold: float | None = None,
    thresholds: str | Path | np.ndarray | None = None,
    top_k: int = 0,
    fmt: str = "csv",
    batch_size: int = 64,
    workers: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    shard: str | tuple[int, int] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    decode: str = "auto",
    decode_timeout: float = DEFAULT_DECODE_TIMEOUT,
    threads: int | None = None,
) -> TagSummary:
    """Tag the images under ``images_dir`` with ``scorer``, writing the files of
    :mod:`hspnet_cli.tagsfile.writer` for ``out`` (resuming an interrupted run with the same settings).

    Args:
        images_dir: Folder of images (keys are paths relative to it).
        out: Tags file (``.csv`` or ``.jsonl``); other files are named from it. With N > 1
            shards, ``.shard-i-of-N`` is inserted before its extension.
        scorer: A :class:`~hspnet_cli.scoring.scorer.Scorer` (placed on its device already).
        list_file: Tag only the paths listed in this file, in its order.
        threshold, thresholds, top_k: Tag selection (see :func:`resolve_thresholds`); ``top_k``
            0 = no cap.
        fmt: ``csv`` or ``jsonl``.
        batch_size, workers: DataLoader settings.
        max_pixels: Images whose header claims more pixels are refused (decompression bombs).
        shard: ``"i/N"``; None -> RANK/WORLD_SIZE from the environment when set.
        overwrite: Delete earlier outputs and start over.
        progress: Show a progress bar (only drawn on a terminal).
        decode: ``cpu`` (PIL in the workers), ``gpu`` (JPEGs decoded on the scorer's device, see
            :mod:`hspnet_cli.tagging.gpu_decode`) or ``auto`` (gpu on CUDA, else cpu).
        decode_timeout: Seconds one image may take to decode and preprocess on the PIL path
            before it is written to the failures file (0: no limit); see
            :func:`~hspnet_cli.tagging.decode.decode_deadline`. Not part of the fingerprint:
            a rerun may change it.
        threads: Intra-op CPU threads (None: the rule of
            :func:`~hspnet_cli.core.device.intra_op_threads`, a core left to each worker).

    Raises:
        UserError: Bad options, no images, outputs of a run with other settings, or another
            process writing the same tags file (the run holds its output lock,
            :mod:`hspnet_cli.core.locks`).
    """
    with output_lock(tags_out_path(out, shard), "tags file"):
        from hspnet_cli.core.device import intra_op_threads_set
        from hspnet_cli.scoring.scorer import describe

        if fmt not in ("csv", "jsonl"):
            raise UserError(f"--format must be csv or jsonl; got '{fmt}'")
        if top_k < 0 or batch_size < 1 or workers < 0 or max_pixels < 1 or not decode_timeout >= 0:
            raise UserError("--top-k, --workers and --decode-timeout must be >= 0, --batch-size and --max-pixels >= 1")
        if threads is not None and threads < 1:
            raise UserError(f"--threads must be at least 1; got {threads}")
        decode_mode = resolve_decode_mode(decode, scorer.device)
        preprocess = TensorPreprocess.from_transform(scorer.transform) if decode_mode == "gpu" else None
        if decode_mode == "gpu" and preprocess is None:
            if str(decode).strip().lower() == "gpu":
                raise UserError(
                    "--decode gpu: this model's preprocessing is not resize / centre crop / normalise, "
                    "which is all the tensor path does; use --decode cpu"
                )
            decode_mode = "cpu"  # auto: fall back quietly to the path that runs any transform
        images_dir = Path(images_dir)
        index, count = parse_shard(shard)
        out = shard_out(out, index, count)
        paths = OutputPaths.for_out(out)
        if paths.tags.is_dir():
            raise UserError(f"{paths.tags}: is a folder; --out is the tags file to write (e.g. tags.csv)")
        thr, thr_source = resolve_thresholds(scorer, threshold, thresholds)
        skipped: Counter = Counter()
        all_items = _items(images_dir, list_file, skipped)
        items = shard_items(all_items, index, count)
        tax = scorer.taxonomy
        embed_dim = int(scorer.label_features.shape[1])
        fingerprint = {
            "scorer": scorer_fingerprint(scorer),
            "labels": tax.label_names,
            "thresholds": [round(float(t), 6) for t in thr],
            "top_k": top_k,
            "format": fmt,
            "max_pixels": max_pixels,
            "shard": [index, count],
            "images_dir": os.path.abspath(images_dir),
            "items": len(items),
            "items_digest": all_items.digest(),
            "decode": decode_mode,
            "text_escaping": TEXT_ESCAPING,
        }
        manifest = _check_existing(paths, fingerprint, overwrite)
        selector = TagSelector(tax.label_names, tax.groups, thr, top_k)
        outputs = {"tags": paths.tags, "embeddings": paths.emb, "failed": paths.failed, "manifest": paths.manifest}

        if manifest is not None and manifest.get("complete"):
            sizes = manifest.get("bytes", {})
            if all(p.is_file() and p.stat().st_size == sizes.get(k) for k, p in paths.data_files().items()):
                counts = manifest["counts"]
                return TagSummary(
                    items=len(items),
                    rows=counts["rows"],
                    failed=counts["failed"],
                    resumed_from=len(items),
                    processed=0,
                    seconds=0.0,
                    images_per_second=0.0,
                    outputs=outputs,
                    failures=read_failures(paths.failed),
                    already_complete=True,
                    shard=(index, count),
                    skipped=dict(skipped),
                    threshold_source=thr_source,
                )
            raise UserError(f"{paths.tags}: the finished run's files were changed since; rerun with --overwrite")

        writer = TagWriter(paths, selector, fmt, embed_dim)
        if manifest is not None and paths.progress.is_file():
            writer.resume(read_json(paths.progress, "tag progress record"))
            log.info("resuming %s after %d of %d items", paths.tags, writer.items_done, len(items))
        else:
            manifest = new_manifest(
                paths,
                model={**describe(scorer), "fingerprint": fingerprint["scorer"]},
                taxonomy=tax.name,
                labels=tax.label_names,
                groups=tax.groups,
                thresholds=thr,
                threshold_source=thr_source,
                options={
                    "images_dir": str(images_dir),
                    "list": None if list_file is None else str(list_file),
                    "format": fmt,
                    "top_k": top_k,
                    "max_pixels": max_pixels,
                    "shard": f"{index}/{count}",
                    "batch_size": batch_size,
                    "workers": workers,
                    "device": str(scorer.device),
                    "decode": decode_mode,
                    "decode_timeout": decode_timeout,
                },
                fingerprint=fingerprint,
                embed_dim=embed_dim,
                items=len(items),
            )
            write_json(paths.manifest, manifest)
            writer.start_fresh()

        resumed_from = writer.items_done
        dataset_type = JpegBytesImages if preprocess is not None else TagImages
        log_start = log_size(paths.decode_log)
        dataset = dataset_type(
            images_dir,
            items,
            scorer.transform,
            max_pixels,
            start=resumed_from,
            timeout=decode_timeout,
            chatter=ChatterLog(paths.decode_log),
        )
        prepare_for_device(scorer)
        start = time.perf_counter()
        try:
            if len(dataset):
                with intra_op_threads_set(workers, threads):
                    tag_batches(dataset, items, scorer, writer, preprocess, batch_size, workers, progress)
            seconds = time.perf_counter() - start
            manifest.update(
                complete=True,
                counts={"items": len(items), "rows": writer.rows, "failed": writer.failed},
                bytes=writer.sizes(),
            )
        finally:
            writer.close()
        write_json(paths.manifest, manifest)
        paths.progress.unlink(missing_ok=True)
        processed = writer.items_done - resumed_from
        messages, chatty = count_since(paths.decode_log, log_start)
        return TagSummary(
            items=len(items),
            rows=writer.rows,
            failed=writer.failed,
            resumed_from=resumed_from,
            processed=processed,
            seconds=seconds,
            images_per_second=processed / seconds if seconds > 0 else 0.0,
            outputs={**outputs, **({"decode_log": paths.decode_log} if messages else {})},
            failures=read_failures(paths.failed),
            shard=(index, count),
            skipped=dict(skipped),
            decoder_messages=messages,
            decoder_images=chatty,
            threshold_source=thr_source,
        )
