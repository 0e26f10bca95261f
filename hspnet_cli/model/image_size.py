"""Running an image tower at another input side than it was built for (``--image-size``).

open_clip's towers hold a positional embedding for one grid: the ViT's per patch, the modified
ResNet's attention pool per cell of its last feature map (side / 32). Another side needs that
embedding resampled to the new grid (bicubic over the 2-D grid, the class position kept), as is
usual when fine-tuning CLIP at a higher resolution. Sides that do not tile the grid exactly
(not a multiple of the patch, or of 32 for the ResNet) are refused up front with the sides that
work, before anything is trained or written.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from hspnet_cli.core.errors import UserError

if TYPE_CHECKING:
    from hspnet_cli.config import RunConfig
    from hspnet_cli.model.hspnet import HSPNet


def _pos_owner(visual: nn.Module) -> tuple[nn.Module, int] | None:
    """The module holding the grid positional embedding and the side of one grid cell, in pixels."""
    pool = getattr(visual, "attnpool", None)
    if pool is not None and hasattr(pool, "positional_embedding"):
        return pool, 32  # ModifiedResNet: stem /4, three strided stages /8 more
    patch = getattr(visual, "patch_size", None)
    if hasattr(visual, "positional_embedding") and patch is not None:
        return visual, int(patch[0] if isinstance(patch, (tuple, list)) else patch)
    return None


def _own_side(visual: nn.Module) -> int:
    size = getattr(visual, "image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def sizes_that_work(visual: nn.Module, around: int | None = None, count: int = 5) -> list[int]:
    """Input sides the tower can run at (multiples of its cell side), the nearest to ``around`` first
    in ascending order; just its own side where the tower cannot be resized."""
    owner = _pos_owner(visual)
    own = _own_side(visual)
    if owner is None:
        return [own]
    cell = owner[1]
    centre = max(around or own, cell)
    start = max(cell, (centre // cell - count // 2) * cell)
    return [start + i * cell for i in range(count)]


def check_image_size(visual: nn.Module, size: int, model_name: str) -> None:
    """Raise a one-line UserError naming the sides that work when ``size`` is not one of them."""
    owner = _pos_owner(visual)
    own = _own_side(visual)
    if size == own:
        return
    works = ", ".join(str(s) for s in sizes_that_work(visual, size))
    if owner is None:
        raise UserError(
            f"--image-size {size}: the image tower of {model_name} runs only at {own} px "
            "(it has no grid positional embedding hspnet can resample)"
        )
    if size < owner[1] or size % owner[1]:
        raise UserError(
            f"--image-size {size}: {model_name} needs a multiple of {owner[1]} px (e.g. {works}; its own side is {own})"
        )


def fit_image_size(visual: nn.Module, size: int, model_name: str = "the model") -> None:
    """Resample ``visual``'s positional embedding in place so it runs at ``size`` px.

    Run it before loading weights trained at ``size`` (the resampled parameter has their shape)
    and before building the optimiser (the parameter is replaced). Records the new side in
    ``visual.image_size`` (and ``grid_size`` for a ViT), which exports and inference read.

    Raises:
        UserError: ``size`` does not tile the tower's grid (see :func:`check_image_size`).
    """
    check_image_size(visual, size, model_name)
    if size == _own_side(visual):
        return
    owner, cell = _pos_owner(visual)  # type: ignore[misc] - checked above
    old = owner.positional_embedding
    new_grid = size // cell
    with torch.no_grad():
        resized = resample_positions(old.detach(), new_grid)
    owner.positional_embedding = nn.Parameter(resized, requires_grad=old.requires_grad)
    visual.image_size = (size, size) if isinstance(getattr(visual, "image_size", None), (tuple, list)) else size
    if hasattr(visual, "grid_size"):
        visual.grid_size = (new_grid, new_grid)


def resample_positions(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """(1 + g*g, C) positions (class token first) -> (1 + grid*grid, C), bicubic over the grid."""
    first, cells = pos[:1], pos[1:]
    old = int(math.isqrt(cells.shape[0]))
    if old * old != cells.shape[0]:
        raise UserError(f"positional embedding of {cells.shape[0]} cells is not a square grid; cannot resize it")
    if old == grid:
        return pos.clone()
    image = cells.reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    image = F.interpolate(image, size=(grid, grid), mode="bicubic", align_corners=False)
    cells = image.permute(0, 2, 3, 1).reshape(grid * grid, -1).to(pos.dtype)
    return torch.cat([first, cells], dim=0)


def model_image_size(model: HSPNet, config: RunConfig) -> int:
    """The configured input side, or the image tower's own."""
    if config.train.image_size:
        return int(config.train.image_size)
    from hspnet_cli.model.clip_models import visual_image_size

    return visual_image_size(model.visual)
