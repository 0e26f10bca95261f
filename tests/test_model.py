"""HSPNet model pieces, one test per equation, on the tiny random open_clip config."""

from __future__ import annotations

import pytest
import torch

from hspnet_cli.config import ModelConfig
from hspnet_cli.model.clip_models import load_clip
from hspnet_cli.model.graph import GCN, build_graph
from hspnet_cli.model.hspnet import HSPNet, build_model
from hspnet_cli.model.text import FrozenTextEncoder, PromptTokens
from hspnet_cli.taxonomy import load_taxonomy


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_clip("hspnet-tiny", "none")


def tiny_config(**kw) -> ModelConfig:
    return ModelConfig(clip_model="hspnet-tiny", pretrained="none", **kw)


# -- graphs (eq. 5-7) ---------------------------------------------------------------------
def test_graph_rows_sum_to_one_with_diagonal_one_minus_r() -> None:
    torch.manual_seed(1)
    feats = torch.randn(10, 16).abs()  # positive features: positive similarities
    graph = build_graph(feats, topk=0.5, r=0.2)
    torch.testing.assert_close(graph.sum(dim=1), torch.ones(10))
    torch.testing.assert_close(torch.diagonal(graph), torch.full((10,), 0.8))


def test_graph_keeps_top_k_per_row_self_included() -> None:
    feats = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.5, 0.5], [0.0, 1.0]])
    graph = build_graph(feats, topk=0.5, r=0.2)  # K = 2: the node itself and its nearest neighbour
    nonzero = (graph > 0).sum(dim=1)
    assert nonzero.tolist() == [2, 2, 2, 2]
    assert graph[0, 1] == pytest.approx(0.2) and graph[3, 2] == pytest.approx(0.2)
    # Off-diagonal weights are proportional to the kept similarities.
    full = build_graph(feats, topk=1.0, r=0.3)
    unit = torch.nn.functional.normalize(feats, dim=-1)
    sim = unit @ unit.T
    row = sim[0, 1:] / sim[0, 1:].sum() * 0.3
    torch.testing.assert_close(full[0, 1:], row)


def test_graph_single_node_is_identity() -> None:
    torch.testing.assert_close(build_graph(torch.randn(1, 4), 0.75, 0.2), torch.ones(1, 1))


# -- GCN (eq. 8-9) ------------------------------------------------------------------------
def test_gcn_residual_forms() -> None:
    torch.manual_seed(0)
    graph = build_graph(torch.randn(5, 8).abs())
    x = torch.randn(5, 8)
    gamma = GCN(8, 16, layers=3, residual="gamma", gamma_init=0.9)
    assert [tuple(w.weight.shape) for w in gamma.weights] == [(16, 8), (16, 16), (8, 16)]
    assert all(w.bias is None for w in gamma.weights)
    h = x
    for i, w in enumerate(gamma.weights):
        h = graph @ (h @ w.weight.T)
        h = torch.nn.functional.leaky_relu(h, 0.2) if i < 2 else h
    torch.testing.assert_close(gamma(graph, x), 0.9 * h + 0.1 * x)
    add = GCN(8, 16, layers=2, residual="add")
    h = graph @ (torch.nn.functional.leaky_relu(graph @ (x @ add.weights[0].weight.T), 0.2) @ add.weights[1].weight.T)
    torch.testing.assert_close(add(graph, x), x + h)


# -- prompts and the text side (eq. 2-4) ----------------------------------------------------
def test_prompt_layout_sos_context_name_period_eos(tiny) -> None:
    names = ["cat", "traffic light"]
    prompts = PromptTokens(tiny.model, tiny.tokenizer, names, n_ctx=4)
    tokens = tiny.tokenizer(["X X X X cat.", "X X X X traffic light."])
    sos, eot = int(tokens[0, 0]), int(tokens[0].max())
    assert prompts.eos_index.tolist() == [int(t.argmax()) for t in tokens] == [7, 8]
    assert prompts.length == 9  # longest prompt: SOS + 4 ctx + traffic light + . + EOS
    emb = tiny.model.token_embedding
    torch.testing.assert_close(prompts.prefix[:, 0], emb(torch.tensor([sos, sos])))
    # suffix = name tokens, ".", EOS, padding, starting right after the context slots
    torch.testing.assert_close(prompts.suffix[1], emb(tokens[1, 5:9]))
    torch.testing.assert_close(prompts.suffix[0, 2], emb(torch.tensor(eot)))
    ctx = torch.randn(2, 4, prompts.prefix.shape[-1])
    assembled = prompts.assemble(ctx)
    assert assembled.shape == (2, 9, prompts.prefix.shape[-1])
    torch.testing.assert_close(assembled[:, 1:5], ctx)


def test_cut_context_equals_full_77_token_computation(tiny) -> None:
    names = ["person", "hair drier", "baseball glove", "a very long compound label name"]
    prompts = PromptTokens(tiny.model, tiny.tokenizer, names, n_ctx=4)
    encoder = FrozenTextEncoder(tiny.model)
    torch.manual_seed(3)
    ctx = torch.randn(len(names), 4, encoder.width)
    cut = encoder(prompts.assemble(ctx), prompts.eos_index)
    # Full-length reference: the same prompts padded with the real padding embeddings to 77.
    tokens = tiny.tokenizer([f"X X X X {n}." for n in names])
    full_emb = tiny.model.token_embedding(tokens).detach()
    full_emb[:, 1:5] = ctx
    full = encoder(full_emb, prompts.eos_index)
    assert prompts.length < 77
    assert (cut - full).abs().max().item() < 1e-5
    # And the fixed-prompt path agrees with open_clip's own encode_text.
    ref = tiny.model.encode_text(tiny.tokenizer(["a photo of a cat."]))
    tok = tiny.tokenizer(["a photo of a cat."])
    mine = encoder(tiny.model.token_embedding(tok), tok.argmax(dim=-1))
    assert (ref - mine).abs().max().item() < 1e-5
    # Free texts (text search) run cut to the longest text and still equal encode_text.
    texts = ["a photo of a cat.", "a dog on a beach at sunset with a red ball"]
    ref = tiny.model.encode_text(tiny.tokenizer(texts))
    assert (ref - encoder.encode_tokens(tiny.tokenizer(texts))).abs().max().item() < 1e-5


def test_text_encoder_is_frozen_but_passes_gradients_to_context(tiny) -> None:
    prompts = PromptTokens(tiny.model, tiny.tokenizer, ["cat", "dog"], n_ctx=2)
    encoder = FrozenTextEncoder(tiny.model)
    ctx = torch.randn(2, 2, encoder.width, requires_grad=True)
    encoder(prompts.assemble(ctx), prompts.eos_index).sum().backward()
    assert ctx.grad is not None and ctx.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in encoder.parameters())


def test_meta_net_shapes_and_group_conditioning(tiny) -> None:
    tax = load_taxonomy("voc")
    model = HSPNet(tiny.model, tiny.tokenizer, tax, tiny_config(method="hcp"))
    dim, width = model.group_features.shape[1], model.text.width
    assert model.group_features.shape == (4, dim)
    assert [m.__class__.__name__ for m in model.meta] == ["Linear", "ReLU", "Linear"]
    assert model.meta[0].in_features == dim and model.meta[2].out_features == 4 * width
    ctx = model._context()
    assert ctx.shape == (20, 4, width)
    # Labels of one group share their context; labels of different groups do not (eq. 3).
    cat, dog, car = (tax.label_index(n) for n in ("cat", "dog", "car"))
    torch.testing.assert_close(ctx[cat], ctx[dog])
    assert not torch.allclose(ctx[cat], ctx[car])


@pytest.mark.parametrize(
    ("method", "context", "slots", "graphs"),
    [
        ("spl", "group", 4, (False, False)),
        ("spl_gcn", "group", 4, (False, True)),
        ("hcp", "group", 4, (False, False)),
        ("hcp", "concat", 8, (False, False)),
        ("hspnet", "sum", 4, (True, True)),
        ("hspnet", "group", 4, (True, True)),
    ],
)
def test_methods_and_prompt_variants_are_configurations(method, context, slots, graphs) -> None:
    torch.manual_seed(0)
    model = build_model(load_taxonomy("voc"), tiny_config(method=method, context=context))
    assert model._context().shape[1] == slots
    assert (model.gcn_group is not None, model.gcn_label is not None) == graphs
    logits = model(torch.randn(3, 3, 64, 64))
    assert logits.shape == (3, 20) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(
        p.grad is not None for n, p in model.named_parameters() if p.requires_grad and not n.startswith("visual")
    )


def test_shared_vs_separate_gcn_and_ablations() -> None:
    shared = build_model(load_taxonomy("voc"), tiny_config(gcn_shared=True))
    assert shared.gcn_group is shared.gcn_label
    separate = build_model(load_taxonomy("voc"), tiny_config(gcn_shared=False))
    assert separate.gcn_group is not separate.gcn_label
    no_groups = build_model(load_taxonomy("voc"), tiny_config(group_graph=False))
    assert no_groups.gcn_group is None and no_groups.gcn_label is not None
    no_labels = build_model(load_taxonomy("voc"), tiny_config(label_graph=False))
    assert no_labels.gcn_label is None and no_labels.gcn_group is not None


def test_scores_are_scaled_cosine(tiny) -> None:
    model = HSPNet(tiny.model, tiny.tokenizer, load_taxonomy("voc"), tiny_config(fixed_scale=10.0))
    img = torch.randn(2, model.group_features.shape[1])
    lab = model.label_features()
    expected = 10.0 * torch.nn.functional.cosine_similarity(img[:, None], lab[None], dim=-1)
    torch.testing.assert_close(model.scores_from_features(img, lab), expected, rtol=1e-4, atol=1e-4)
    learned = HSPNet(tiny.model, tiny.tokenizer, load_taxonomy("voc"), tiny_config(logit_scale="learned"))
    assert learned.logit_scale.requires_grad
    assert learned.logit_scale.exp().item() == pytest.approx(tiny.model.logit_scale.exp().item())


def test_stored_group_features_are_used(tiny) -> None:
    tax = load_taxonomy("voc")
    torch.manual_seed(5)
    tax.group_features = torch.nn.functional.normalize(torch.randn(4, 32), dim=-1).numpy()
    model = HSPNet(tiny.model, tiny.tokenizer, tax, tiny_config())
    torch.testing.assert_close(model.group_features, torch.as_tensor(tax.group_features))
    tax.group_features = tax.group_features[:, :16]
    with pytest.raises(Exception, match="16-d group features"):
        HSPNet(tiny.model, tiny.tokenizer, tax, tiny_config())


def test_taxonomy_ablations_keep_labels_and_group_sizes() -> None:
    from hspnet_cli.model.hspnet import ablate_taxonomy

    tax = load_taxonomy("coco")
    shuffled = ablate_taxonomy(tax, "random_groups", seed=1)
    assert shuffled.label_names == tax.label_names
    assert [len(m) for m in shuffled.groups.values()] == [len(m) for m in tax.groups.values()]
    assert shuffled.groups != tax.groups
    assert ablate_taxonomy(tax, "random_groups", seed=1).groups == shuffled.groups
    anon = ablate_taxonomy(tax, "anonymous_groups")
    assert anon.group_names[:3] == ["group1", "group2", "group3"]
    assert list(anon.groups.values()) == list(tax.groups.values())
