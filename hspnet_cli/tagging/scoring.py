"""The tagger's scoring loop: batches from the DataLoader through the model into the writer.

Kept apart from :mod:`hspnet_cli.tagging.run`, which decides what to tag, resumes and writes
the manifest; this module only turns decoded batches into rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hspnet_cli.core.errors import UserError
from hspnet_cli.sources.discover import PathList
from hspnet_cli.tagging.decode import TagImages, make_tag_loader
from hspnet_cli.tagging.gpu_decode import TensorPreprocess, collate_jpeg, finish_batch
from hspnet_cli.tagsfile.writer import TagWriter


def prepare_for_device(scorer: Any) -> None:
    """cuDNN autotuning and a channels-last image tower on CUDA (fixed image sizes); no-op elsewhere."""
    if scorer.device.type != "cuda":
        return
    from hspnet_cli.core.device import tune_for_cuda

    tune_for_cuda(scorer.device)
    try:
        scorer.image_encoder.to(memory_format=torch.channels_last)
    except Exception:  # noqa: BLE001 - a TorchScript module may refuse; channels_last is only a speed-up
        pass


def embed(scorer: Any, images: torch.Tensor) -> torch.Tensor:
    """Image embeddings of a batch; on CUDA channels-last under half-precision autocast."""
    device = scorer.device
    if device.type == "cuda":
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        with torch.autocast("cuda", dtype=dtype):
            return scorer.embed(images)
    return scorer.embed(images)


def tag_batches(
    dataset: TagImages,
    items: PathList,
    scorer: Any,
    writer: TagWriter,
    preprocess: TensorPreprocess | None,
    batch_size: int,
    workers: int,
    progress: bool,
) -> None:
    """Score every batch of ``dataset`` and append it through ``writer``.

    Raises:
        UserError: A DataLoader worker died (a decoder crashed on some file, or the OOM killer
            struck). Everything written so far is kept and recorded, so a rerun continues.
    """
    from hspnet_cli.core.progress import NoBar, epoch_progress

    num_labels, embed_dim = scorer.taxonomy.num_labels, writer.embed_dim
    on_cuda = scorer.device.type == "cuda"
    loader = make_tag_loader(
        dataset, batch_size, workers, pin_memory=on_cuda, collate_fn=collate_jpeg if preprocess is not None else None
    )
    with epoch_progress("tagging", len(dataset)) if progress else NoBar() as bar, torch.no_grad():
        try:
            for batch in loader:
                if preprocess is not None:
                    images, positions, failed = finish_batch(batch, dataset, preprocess, scorer.device)
                else:
                    images, positions, failed = batch
                keys = [items[p] for p in positions.tolist()]
                if len(keys):
                    emb = embed(scorer, images)
                    probs = torch.sigmoid(scorer.scores_from_embeddings(emb).float()).cpu().numpy()
                    emb_np = emb.float().cpu().numpy()
                else:
                    probs = np.zeros((0, num_labels), np.float32)
                    emb_np = np.zeros((0, embed_dim), np.float32)
                writer.write_batch(keys, probs, emb_np, [(items[p], err) for p, err in failed], len(keys) + len(failed))
                bar.advance(len(keys) + len(failed))
        except RuntimeError as exc:
            # torch reports a dead worker from its SIGCHLD handler, so the error can surface anywhere
            # in the loop body (in the forward pass too), not only while fetching the next batch.
            if "DataLoader worker" not in str(exc):
                raise
            first = writer.items_done
            raise UserError(
                f"an image-decoding worker died ({str(exc).strip().splitlines()[0]}) while reading the images "
                f"from #{first + 1} of {len(items)} ('{items[min(first, len(items) - 1)]}') on; the {writer.rows} "
                "rows written are kept: rerun the same command to continue, and if it dies again there, tag with "
                "--workers 0 to find the file, or leave it out with --list"
            ) from None
