"""HSPNet (and SPL, SPL+GCN, HCP as configurations of it) on an open_clip backbone.

Text side, once per step (independent of the images):
    G   (m, D)      group features, frozen text tower on "a photo of a <group>." (eq. 2), or
                    a k-means taxonomy's stored centres; constant.
    G*  (m, D)      GCN on the group graph (eq. 8), if enabled.
    s   (C, N, W)   Meta(G* or G)[group of each label] (eq. 3): group-conditioned context.
    w   (C, N, W)   per-label learnable context (SPL / CoOp), for the label-context variants.
    T   (C, D)      frozen text tower on [SOS, context, name, ".", EOS] (eq. 4).
    T*  (C, D)      GCN on the label graph (eq. 9), if enabled.
Image side: f (B, D) from the (trainable) image tower.
Scores (eq. 10): logits = scale * cos(f, T*); probabilities sigmoid(logits).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from hspnet_cli.config import ModelConfig
from hspnet_cli.core.errors import UserError
from hspnet_cli.model.graph import GCN, build_graph, graph_from_similarity
from hspnet_cli.model.text import FrozenTextEncoder, PromptTokens, encode_fixed_prompts
from hspnet_cli.taxonomy import Taxonomy


def group_texts(taxonomy: Taxonomy) -> list[str]:
    """What the text tower reads for each group: its name with underscores as spaces."""
    return [g.replace("_", " ") for g in taxonomy.group_names]


class HSPNet(nn.Module):
    """Multi-label scorer with hierarchical prompts. Build it with :func:`build_model`."""

    def __init__(
        self,
        clip_model: Any,
        tokenizer: Callable,
        taxonomy: Taxonomy,
        config: ModelConfig,
        similarity: tuple[Any, Any] | None = None,
    ) -> None:
        """See :func:`build_model`; ``similarity`` is ``(label_sim, group_sim or None)`` from
        :func:`hspnet_cli.model.similarity.load_similarity`, else the graphs come from the
        backbone's own prompt features."""
        super().__init__()
        label_sim, group_sim = similarity if similarity is not None else (None, None)
        config.validate()
        self.config = config
        self.visual = clip_model.visual
        self.text = FrozenTextEncoder(clip_model)
        self.tokenizer = tokenizer  # for encode_texts (text search); not a module, not saved
        width = self.text.width
        dim = int(
            clip_model.text_projection.shape[-1]
            if not isinstance(clip_model.text_projection, nn.Linear)
            else clip_model.text_projection.out_features
        )
        self.embed_dim = dim
        self.num_labels = taxonomy.num_labels
        self.num_groups = taxonomy.num_groups
        method = config.method
        uses_groups = config.uses_groups
        uses_label_ctx = config.uses_label_context
        use_group_graph = uses_groups and method == "hspnet" and config.group_graph
        use_label_graph = method == "spl_gcn" or (method == "hspnet" and config.label_graph)
        n_slots = config.n_ctx * (2 if uses_groups and config.context == "concat" else 1)

        label_texts = [spec.text for spec in taxonomy.labels]
        self.prompts = PromptTokens(clip_model, tokenizer, label_texts, n_slots)
        self.register_buffer("group_index", torch.as_tensor(taxonomy.group_index()), persistent=False)

        # Constant group features: stored k-means centres, else the frozen text tower (eq. 2).
        if uses_groups:
            if taxonomy.group_features is not None:
                group_feats = torch.as_tensor(taxonomy.group_features, dtype=torch.float32)
                if group_feats.shape[1] != dim:
                    raise UserError(
                        f"taxonomy '{taxonomy.name}' stores {group_feats.shape[1]}-d group features "
                        f"but {config.clip_model} embeds in {dim}-d; rebuild it with this model"
                    )
            else:
                group_feats = encode_fixed_prompts(
                    clip_model, tokenizer, [config.group_template.format(t) for t in group_texts(taxonomy)]
                )
            self.register_buffer("group_features", group_feats)  # (m, D)
            hidden = int(config.meta_hidden_mult * dim)
            self.meta = nn.Sequential(
                nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, config.n_ctx * width)
            )  # eq. 3
        else:
            self.register_buffer("group_features", torch.zeros(0, dim))
            self.meta = None
        self.label_context = (
            nn.Parameter(torch.randn(self.num_labels, config.n_ctx, width) * 0.02) if uses_label_ctx else None
        )  # CoOp init

        # Graphs from the initial (fixed-prompt) features.
        self.gcn_group = self.gcn_label = None
        gcn_hidden = int(config.gcn_hidden_mult * dim)

        def make_gcn() -> GCN:
            return GCN(dim, gcn_hidden, config.gcn_layers, config.gcn_residual, config.gcn_gamma_init, config.gcn_init)

        if use_group_graph:
            self.register_buffer(
                "group_graph",
                build_graph(self.group_features, config.graph_topk, config.graph_r)
                if group_sim is None
                else graph_from_similarity(group_sim, config.graph_topk, config.graph_r),
            )
            self.gcn_group = make_gcn()
        if use_label_graph:
            if label_sim is None:
                label_init = encode_fixed_prompts(
                    clip_model, tokenizer, [config.label_template.format(t) for t in label_texts]
                )
                graph = build_graph(label_init, config.graph_topk, config.graph_r)
            else:
                graph = graph_from_similarity(label_sim, config.graph_topk, config.graph_r)
            self.register_buffer("label_graph", graph)
            self.gcn_label = self.gcn_group if (config.gcn_shared and self.gcn_group is not None) else make_gcn()

        if config.logit_scale == "learned":
            self.logit_scale = nn.Parameter(clip_model.logit_scale.detach().clone().float())
        else:
            self.register_buffer("logit_scale", torch.tensor(math.log(config.fixed_scale)))

    # -- text side -----------------------------------------------------------------------
    def _context(self) -> torch.Tensor:
        """(C, n_slots, W) context vectors of every label prompt."""
        parts: list[torch.Tensor] = []
        if self.meta is not None:
            groups = self.group_features
            if self.gcn_group is not None:
                refined = self.gcn_group(self.group_graph, groups)  # G* eq. 8
                if self.config.meta_input == "refined":
                    groups = refined
            s = self.meta(groups).view(self.num_groups, self.config.n_ctx, -1)  # (m, N, W)
            parts.append(s[self.group_index])  # (C, N, W)
        if self.label_context is not None:
            if parts and self.config.context == "sum":
                return parts[0] + self.label_context
            parts.append(self.label_context)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # concat

    def label_features(self) -> torch.Tensor:
        """(C, D) refined label features T* (unnormalised)."""
        context = self._context()
        prompts = self.prompts.assemble(context)  # (C, L, W)
        feats = self.text(prompts, self.prompts.eos_index)  # (C, D) eq. 4
        if self.gcn_label is not None:
            feats = self.gcn_label(self.label_graph.to(feats.dtype), feats)  # T* eq. 9
        return feats

    # -- scores --------------------------------------------------------------------------
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, D) image features (unnormalised)."""
        return self.visual(images)

    def scores_from_features(
        self, image_features: torch.Tensor, label_features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, D) image features -> (B, C) logits = scale * cos (eq. 10).

        Normalisation and the product run in float32 outside autocast (see
        :func:`cosine_logits`), whatever precision the towers ran in.
        """
        if label_features is None:
            label_features = self.label_features()
        return cosine_logits(image_features, label_features, self.logit_scale.exp())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, C) logits."""
        return self.scores_from_features(self.encode_image(images))

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """(n, D) unit features of plain texts through the frozen text tower (no learned context)."""
        return F.normalize(self.text.encode_tokens(self.tokenizer(list(texts))).float(), dim=-1)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights that training changes (the frozen text tower comes from the pretrained source)."""
        # Everything under ``text.`` is the frozen tower (called every step by the EMA: no second
        # state_dict walk to find its keys).
        return {k: v for k, v in self.state_dict().items() if not k.startswith("text.")}

    def text_fingerprint(self) -> str:
        """SHA-256 of the frozen text tower's weights: checks a rebuilt model got the same tower.

        The token embedding is left out, as it was before the tower kept it: checkpoints written
        then still check, and its 25M values (RN50) need not be hashed at every save.
        """
        import hashlib

        h = hashlib.sha256()
        for name, tensor in sorted(self.text.state_dict().items()):
            if name.startswith("token_embedding."):
                continue
            h.update(name.encode())
            h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()


def cosine_logits(
    image_features: torch.Tensor, label_features: torch.Tensor, scale: torch.Tensor | float
) -> torch.Tensor:
    """(B, D) x (C, D) -> (B, C) ``scale * cos``, normalised and multiplied in float32.

    Autocast is switched off here: under it the product would run in bf16/fp16 even on float32
    inputs, and bf16 keeps 8 bits of mantissa, so the narrow spread of CLIP cosines collapses
    onto a few dozen values per class and ties reorder images (``benchmarks/score_precision.py``).
    """
    with torch.autocast(device_type=image_features.device.type, enabled=False):
        img = F.normalize(image_features.float(), dim=-1)
        lab = F.normalize(label_features.float(), dim=-1)
        scale = scale.float() if isinstance(scale, torch.Tensor) else scale
        return scale * img @ lab.T


def _warn_if_order_differs(model: HSPNet, label_sim: Any, taxonomy: Taxonomy, config: ModelConfig) -> None:
    """A names-less ``.npy`` is read in the taxonomy's order: say so when a pretrained backbone's
    own label similarities disagree with the file (rows probably in another order)."""
    import logging

    from hspnet_cli.model.similarity import order_agreement

    own = model.encode_texts([config.label_template.format(s.text) for s in taxonomy.labels])
    agreement = order_agreement(label_sim, (own @ own.T).cpu().numpy())
    if agreement < 0.5:
        logging.getLogger(__name__).warning(
            "%s: its label similarities agree poorly with %s's own (correlation %.2f): are its rows in the "
            "taxonomy's label order, then its group order?",
            config.graph_similarity,
            config.clip_model,
            agreement,
        )


def ablate_taxonomy(taxonomy: Taxonomy, ablation: str, seed: int = 0) -> Taxonomy:
    """The paper's taxonomy ablations, as a new taxonomy with the same labels.

    ``random_groups`` ("w/o LGP"): labels are dealt to groups at random, keeping every group's
    size, so the hierarchy carries no meaning. ``anonymous_groups`` ("w/o GRP"): the groups keep
    their members but are named group1, group2, ... so their text features carry no semantics.
    Stored group features are dropped in both cases (they describe the real groups).
    """
    if ablation == "none":
        return taxonomy
    groups = list(taxonomy.groups.items())
    if ablation == "random_groups":
        order = torch.randperm(taxonomy.num_labels, generator=torch.Generator().manual_seed(seed)).tolist()
        shuffled = [taxonomy.label_names[i] for i in order]
        new, start = {}, 0
        for name, members in groups:
            new[name] = shuffled[start : start + len(members)]
            start += len(members)
    elif ablation == "anonymous_groups":
        new = {f"group{i + 1}": members for i, (_, members) in enumerate(groups)}
    else:
        raise UserError(f"unknown taxonomy ablation '{ablation}'")
    return Taxonomy(
        name=f"{taxonomy.name}-{ablation}",
        labels=list(taxonomy.labels),
        groups=new,
        description=f"{ablation} ablation of {taxonomy.name}",
    )


def build_model(
    taxonomy: Taxonomy, config: ModelConfig, device: str = "cpu", seed: int = 0, quick_gelu: bool | None = None
) -> HSPNet:
    """Create the backbone named in ``config`` and wrap it as HSPNet for ``taxonomy``.

    The taxonomy ablation of ``config`` (if any) is applied here, seeded by ``seed``.
    ``quick_gelu`` is passed to :func:`~hspnet_cli.model.clip_models.load_clip` (None: the activation
    the weights need; a resumed run passes what its checkpoint was built with).
    """
    from hspnet_cli.model.clip_models import load_clip

    similarity = None
    if config.graph_similarity:
        from hspnet_cli.model.similarity import load_similarity

        # Checked before the backbone is built: a wrong file fails in a second, not minutes in.
        similarity = load_similarity(config.graph_similarity, taxonomy)
    clip = load_clip(config.clip_model, config.pretrained, device=device, quick_gelu=quick_gelu)
    taxonomy = ablate_taxonomy(taxonomy, config.taxonomy_ablation, seed)
    model = HSPNet(clip.model, clip.tokenizer, taxonomy, config, similarity)
    if similarity is not None and not clip.is_random:
        _warn_if_order_differs(model, similarity[0], taxonomy, config)
    if config.freeze_image_encoder:
        for p in model.visual.parameters():
            p.requires_grad_(False)
    return model.to(device)
