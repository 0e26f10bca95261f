"""The frozen CLIP text tower, run on learned prompt embeddings at the length prompts need.

A label prompt is ``[SOS, ctx_1 .. ctx_N, name tokens, ".", EOS]`` (paper eq. 4). Its token
embeddings are fixed except the N context vectors, so the fixed parts are embedded once
(``prefix`` = SOS, ``suffix`` = name, ".", EOS, padding) and only the context is spliced in
each step.

CLIP's text transformer is causal: position i attends to positions <= i, and the feature is
read at the EOS position. Tokens after the longest prompt's EOS can therefore not change any
output, and running 77 positions when prompts need 12 wastes ~6x the text-side compute
(forward and backward). The encoder is cut to the longest prompt; ``tests/test_model.py``
proves the result equals the full-length computation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from hspnet_cli.core.errors import UserError


class FrozenTextEncoder(nn.Module):
    """CLIP's text transformer, final norm and projection, frozen; gradients flow to inputs."""

    def __init__(self, clip_model: Any) -> None:
        super().__init__()
        for name in ("transformer", "positional_embedding", "ln_final", "text_projection", "token_embedding"):
            if not hasattr(clip_model, name):
                raise UserError(
                    f"model {type(clip_model).__name__} has no plain CLIP text tower "
                    f"('{name}' missing); prompt learning needs an OpenAI-style text transformer"
                )
        self.transformer = clip_model.transformer
        # Kept (shared, frozen) so the tower can encode any text, not only the learned prompts:
        # text search over a trained model needs it, and a checkpoint of a random or local
        # backbone stores it with the rest of the tower.
        self.token_embedding = clip_model.token_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.register_buffer("positional_embedding", clip_model.positional_embedding.detach().clone())
        self.max_length = int(self.positional_embedding.shape[0])
        self.width = int(self.positional_embedding.shape[1])
        self.batch_first = bool(getattr(self.transformer, "batch_first", True))
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, embeddings: torch.Tensor, eos_index: torch.Tensor) -> torch.Tensor:
        """Encode prompt embeddings.

        Args:
            embeddings: (n, L, width) token embeddings, L <= context length.
            eos_index: (n,) position of each prompt's EOS token (< L).

        Returns:
            (n, embed_dim) text features (not normalised).
        """
        length = embeddings.shape[1]
        x = embeddings + self.positional_embedding[:length].to(embeddings.dtype)
        # Causal mask of the cut length: -inf above the diagonal, as CLIP's own.
        mask = torch.full((length, length), float("-inf"), device=x.device).triu_(1)
        if not self.batch_first:
            x = x.permute(1, 0, 2)
        x = self.transformer(x, attn_mask=mask)
        if not self.batch_first:
            x = x.permute(1, 0, 2)
        x = self.ln_final(x)  # (n, L, width)
        x = x[torch.arange(x.shape[0], device=x.device), eos_index]  # (n, width)
        proj = self.text_projection
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj  # (n, embed_dim)

    @torch.no_grad()
    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Features of tokenised texts, cut to the longest text like the prompts.

        Args:
            tokens: (n, 77) CLIP token ids (EOS has the highest id of the vocabulary).

        Returns:
            (n, embed_dim) text features (not normalised), as ``clip.encode_text`` gives.
        """
        device = self.positional_embedding.device
        eos = tokens.argmax(dim=-1).to(device)  # (n,)
        length = int(eos.max()) + 1
        embedded = self.token_embedding(tokens[:, :length].to(device))  # (n, L, width)
        return self.forward(embedded, eos)


class PromptTokens(nn.Module):
    """Fixed token embeddings around N learnable context slots, for a list of names.

    Buffers (not trained, derived from the frozen token embedding):
        prefix: (n, 1, width) SOS embedding.
        suffix: (n, L - 1 - N, width) name, ".", EOS and padding up to the cut length L.
        eos_index: (n,) EOS position in the cut prompt.
    """

    def __init__(self, clip_model: Any, tokenizer: Callable, names: Sequence[str], n_ctx: int) -> None:
        super().__init__()
        placeholder = " ".join(["X"] * n_ctx)
        tokens = tokenizer([f"{placeholder} {name}." for name in names])  # (n, 77)
        eos = tokens.argmax(dim=-1)  # EOT has the highest id in CLIP's vocabulary
        length = int(eos.max()) + 1
        with torch.no_grad():
            embedded = clip_model.token_embedding(tokens[:, :length].to(clip_model.token_embedding.weight.device))
        self.n_ctx = n_ctx
        self.length = length
        self.register_buffer("prefix", embedded[:, :1].detach().clone())
        self.register_buffer("suffix", embedded[:, 1 + n_ctx :].detach().clone())
        self.register_buffer("eos_index", eos.clone())

    def assemble(self, context: torch.Tensor) -> torch.Tensor:
        """(n, N, width) context -> (n, L, width) prompt embeddings."""
        return torch.cat([self.prefix.to(context.dtype), context, self.suffix.to(context.dtype)], dim=1)


def encode_fixed_prompts(clip_model: Any, tokenizer: Callable, texts: Sequence[str]) -> torch.Tensor:
    """(n, embed_dim) features of fixed texts with the frozen text tower (no gradient)."""
    with torch.no_grad():
        tokens = tokenizer(list(texts)).to(next(clip_model.parameters()).device)
        return clip_model.encode_text(tokens).float()
