"""Run configuration: dataclass schemas, named YAML presets, and overrides.

A configuration is data: a preset file (``hspnet_cli/presets/<name>.yaml``) or the user's own
YAML fills the dataclasses below; command-line options override single fields; the resolved
configuration is written next to every output and stored in every checkpoint.

Every difference between the paper and the published code (method-notes section 1-2) is a
field here. Two presets name the two recipes: ``official`` (the published code, the default)
and ``paper`` (the paper's text).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.safe_yaml import load_yaml_file

PRESET_DIR = Path(__file__).resolve().parent / "presets"

METHODS = ("spl", "spl_gcn", "hcp", "hspnet")
CONTEXTS = ("group", "label", "concat", "sum")


@dataclass
class ModelConfig:
    """The model: backbone, prompts, graphs and scoring.

    Attributes:
        clip_model: open_clip architecture.
        pretrained: Pretrained tag, checkpoint file, or ``none`` (random: tests only).
        method: ``spl`` (learnable context per label, CoOp-style), ``spl_gcn`` (SPL + label
            graph), ``hcp`` (group-conditioned prompts, no graphs), ``hspnet`` (HCP + graphs).
        context: Prompt context of a label: ``group`` (s_i = Meta(g)), ``label`` (w_i, own
            learnable tokens), ``concat`` ([s_i, w_i]) or ``sum`` (s_i + w_i). SPL methods use ``label``.
        n_ctx: Context tokens per prompt (N).
        meta_input: ``refined`` (GCN-refined group features g*, the published code) or ``raw``
            (g, paper eq. 3).
        meta_hidden_mult: Meta network hidden width as a multiple of the embedding width.
        group_graph: Refine group features on the inter-group graph (paper eq. 8).
        label_graph: Refine label features on the inter-label graph (paper eq. 9).
        gcn_shared: One GCN for both graphs (published code) or one per graph (paper).
        gcn_layers: GCN layers (L).
        gcn_hidden_mult: Hidden GCN width as a multiple of the embedding width.
        gcn_residual: ``gamma`` (gamma*H_L + (1-gamma)*H_0, learnable gamma; code) or ``add``
            (H_0 + H_L; paper).
        gcn_gamma_init: Initial gamma for ``gamma`` residuals.
        gcn_init: GCN weight initialisation: ``fan_out`` (U(+-1/sqrt(out_features)) per layer,
            the published code) or ``fan_in`` (``nn.Linear``'s own, +-1/sqrt(in_features)).
        graph_topk: Fraction of each row's entries kept (K = int(frac * size), at least 1).
        graph_r: Weight given to the neighbours of each node (eq. 7).
        graph_similarity: Optional ``.npy``/``.npz`` file of precomputed text similarities the
            graphs are built from instead of this backbone's own prompt features (the published
            code's files): (C+m) x (C+m) labels then groups, or C x C labels only. See
            :mod:`hspnet_cli.model.similarity`.
        logit_scale: ``fixed`` (``fixed_scale``; code) or ``learned`` (CLIP's temperature; paper).
        fixed_scale: The fixed logit scale.
        freeze_image_encoder: Keep the image tower fixed (enables feature caching).
        group_template: Prompt for group features (eq. 2).
        label_template: Prompt for the initial label features the label graph is built from.
        taxonomy_ablation: ``none``, ``random_groups`` (paper "w/o LGP") or
            ``anonymous_groups`` (paper "w/o GRP": group names become group1, group2, ...).
    """

    clip_model: str = "RN50"
    pretrained: str | None = "openai"
    method: str = "hspnet"
    context: str = "group"
    n_ctx: int = 4
    meta_input: str = "refined"
    meta_hidden_mult: float = 2.0
    group_graph: bool = True
    label_graph: bool = True
    gcn_shared: bool = True
    gcn_layers: int = 3
    gcn_hidden_mult: float = 2.0
    gcn_residual: str = "gamma"
    gcn_gamma_init: float = 0.9
    gcn_init: str = "fan_out"
    graph_topk: float = 0.75
    graph_r: float = 0.2
    graph_similarity: str | None = None
    logit_scale: str = "fixed"
    fixed_scale: float = 10.0
    freeze_image_encoder: bool = False
    group_template: str = "a photo of a {}."
    label_template: str = "a photo of a {}."
    taxonomy_ablation: str = "none"

    def validate(self) -> None:
        """Raise UserError on values outside their allowed sets."""
        _choice("model.method", self.method, METHODS)
        _choice("model.context", self.context, CONTEXTS)
        _choice("model.meta_input", self.meta_input, ("refined", "raw"))
        _choice("model.gcn_residual", self.gcn_residual, ("gamma", "add"))
        _choice("model.gcn_init", self.gcn_init, ("fan_out", "fan_in"))
        _choice("model.logit_scale", self.logit_scale, ("fixed", "learned"))
        _choice("model.taxonomy_ablation", self.taxonomy_ablation, ("none", "random_groups", "anonymous_groups"))
        if self.n_ctx < 1 or self.gcn_layers < 1:
            raise UserError("model.n_ctx and model.gcn_layers must be at least 1")
        if not 0 < self.graph_topk <= 1 or not 0 <= self.graph_r <= 1:
            raise UserError("model.graph_topk must be in (0, 1] and model.graph_r in [0, 1]")
        for name in ("group_template", "label_template"):
            if "{}" not in getattr(self, name):
                raise UserError(f"model.{name} must contain {{}} where the name goes")

    @property
    def uses_groups(self) -> bool:
        """True when label prompts are conditioned on group features."""
        return self.method in ("hcp", "hspnet") and self.context != "label"

    @property
    def uses_label_context(self) -> bool:
        """True when labels own learnable context tokens (w_i)."""
        return self.method in ("spl", "spl_gcn") or self.context in ("label", "concat", "sum")


@dataclass
class TrainConfig:
    """Optimisation and data handling.

    Attributes:
        epochs: Epochs to run.
        schedule_epochs: Length of the OneCycle schedule in epochs (None: ``epochs``). The
            published code builds it for 80 epochs and keeps the best early epoch.
        batch_size: Images per step (per process under DDP).
        lr: Max learning rate of the image encoder and prompt learner.
        gcn_lr: Max learning rate of the GCN.
        weight_decay: Coupled L2 decay, applied only to weights with >= 2 dimensions.
        pct_start: OneCycle warm-up fraction.
        ema: Keep an exponential moving average of the model.
        ema_decay: EMA decay; None: exp(ln 0.82 / iterations per epoch) as published.
        amp: ``fp16`` (with a grad scaler, as published; GPU only), ``auto`` (bf16 on GPUs that
            support it, else fp16; off on CPU), ``bf16`` (also on CPU) or ``off``. Scores are
            normalised and multiplied in float32 whatever is chosen.
        bn_frozen_first_epoch: Train the first epoch with the image tower's BatchNorm layers in
            eval mode (pretrained running statistics kept), as the published code does (its
            model switches to train mode only after the first validation).
        patience: Stop after this many epochs without a better validation mAP (None: never).
        augment: ``none`` (published code) or ``flip_crop`` (paper).
        image_size: Input side; None: the model's own.
        loss: Loss name (see ``hspnet_cli.losses``).
        loss_options: Options of the loss, named as in its paper.
        seed: Seed of initialisation, shuffling and augmentation.
        num_workers: DataLoader workers.
        cache_features: With a frozen image encoder and no augmentation, compute image
            features once and reuse them.
        channels_last: Use the channels-last memory format for the image tower on GPU.
    """

    epochs: int = 30
    schedule_epochs: int | None = 80
    batch_size: int = 128
    lr: float = 1e-4
    gcn_lr: float = 5e-4
    weight_decay: float = 1e-4
    pct_start: float = 0.2
    ema: bool = True
    ema_decay: float | None = None
    amp: str = "auto"
    bn_frozen_first_epoch: bool = True
    patience: int | None = None
    augment: str = "none"
    image_size: int | None = None
    loss: str = "splc"
    loss_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    num_workers: int = 4
    cache_features: bool = False
    channels_last: bool = True

    def validate(self) -> None:
        """Raise UserError on values outside their allowed ranges."""
        _choice("train.amp", self.amp, ("auto", "bf16", "fp16", "off"))
        _choice("train.augment", self.augment, ("none", "flip_crop"))
        if self.epochs < 1 or self.batch_size < 1:
            raise UserError("train.epochs and train.batch_size must be at least 1")
        if self.schedule_epochs is not None and self.schedule_epochs < self.epochs:
            raise UserError(
                f"train.schedule_epochs ({self.schedule_epochs}) must be >= train.epochs "
                f"({self.epochs}), or null to follow epochs"
            )
        if self.lr <= 0 or self.gcn_lr <= 0:
            raise UserError("train.lr and train.gcn_lr must be positive")
        if self.patience is not None and self.patience < 1:
            raise UserError(
                f"train.patience must be at least 1 epoch, or null for no early stopping; got {self.patience}"
            )


@dataclass
class RunConfig:
    """Everything a training run needs besides its data paths."""

    preset: str = "official"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> RunConfig:
        self.model.validate()
        self.train.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"{name} must be one of {', '.join(allowed)}; got '{value}'")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a field's type hint, converting ints to floats where needed."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is not None and type(None) in args:  # Optional[X]
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = get_origin(hint), get_args(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is dict:
        if isinstance(value, dict):
            return dict(value)
    else:  # pragma: no cover - schema uses only the types above
        return value
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:80] + "..."
    raise UserError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {shown}")


def _keys(keys: list[Any]) -> str:
    """Unknown keys for a message: at most five, each cut to 40 characters (a file can hold thousands)."""
    shown = str([str(k)[:40] for k in keys[:5]])
    return shown + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")


def _fill(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names, key=str)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {_keys(unknown)}; allowed: {sorted(names)}")
    return cls(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()})


def config_from_dict(data: dict[str, Any], source: str = "<config>") -> RunConfig:
    """Build a validated :class:`RunConfig` from a mapping ``{preset?, model: {...}, train: {...}}``.

    Values not given keep the defaults of the named ``preset`` (``official`` if absent).
    """
    if not isinstance(data, dict):
        raise UserError(f"{source}: a config must be a YAML mapping with 'model' and/or 'train'")
    # ``taxonomy``: the record a run's config.yaml carries (hspnet_cli.train.record), so that
    # file is a valid --config; the taxonomy itself is chosen with -t or by the split.
    unknown = sorted(set(data) - {"preset", "model", "train", "taxonomy"}, key=str)
    if unknown:
        raise UserError(f"{source}: unknown key(s) {_keys(unknown)}; allowed: model, train, preset")
    preset = data.get("preset", "official")
    merged = load_preset(str(preset)).to_dict()
    for section in ("model", "train"):
        part = data.get(section) or {}
        if not isinstance(part, dict):
            raise UserError(f"{source}: '{section}' must be a mapping")
        merged[section].update(part)
    return RunConfig(
        preset=str(preset),
        model=_fill(ModelConfig, merged["model"], f"{source}: model"),
        train=_fill(TrainConfig, merged["train"], f"{source}: train"),
    ).validate()


def list_presets() -> list[str]:
    """Names of the shipped presets."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> RunConfig:
    """The named preset as a validated config."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"no preset '{name}' (presets: {', '.join(list_presets())})")
    data = load_yaml_file(path, "preset") or {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: a preset must be a YAML mapping with 'model' and 'train'")
    model = _fill(ModelConfig, data.get("model") or {}, f"{path}: model")
    train = _fill(TrainConfig, data.get("train") or {}, f"{path}: train")
    return RunConfig(preset=name, model=model, train=train).validate()


def load_config(path: str | Path) -> RunConfig:
    """Read a user's YAML config (``preset`` plus overrides), validated."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    return config_from_dict(load_yaml_file(path, "config") or {}, source=str(path))


def apply_overrides(config: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Return a copy of ``config`` with ``{"model.n_ctx": 8, "train.lr": 1e-3}`` applied."""
    data = config.to_dict()
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if section not in ("model", "train") or not name:
            raise UserError(f"override '{key}' must look like model.NAME or train.NAME")
        data[section][name] = value
    return config_from_dict(data, source="command line")


def config_to_yaml(config: RunConfig) -> str:
    """The resolved configuration as YAML (what is written next to every output)."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
