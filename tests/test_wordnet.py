"""WordNet access (NLTK corpus or Debian files) and the ``build --wordnet`` taxonomy builder."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nltk.data
import pytest
from sklearn.metrics import adjusted_rand_score

from hspnet_cli.core.errors import UserError
from hspnet_cli.taxonomy import LabelSpec, load_label_list, load_taxonomy, taxonomy_from_dict, wordnet_data
from hspnet_cli.taxonomy.wordnet_build import UNKNOWN_GROUP, build_wordnet_taxonomy, common_hypernym_name
from hspnet_cli.taxonomy.wordnet_data import DEBIAN_WORDNET_DIR, LEXNAMES_TEXT

HAVE_DEBIAN = (DEBIAN_WORDNET_DIR / "data.noun").is_file()


@pytest.fixture(scope="module")
def wordnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A WordNet reader prepared in a private cache (never the user's ~/.cache).

    ``make test`` installs WordNet data first, so a missing corpus is a failed set-up, not a skip.
    """
    saved_path = list(nltk.data.path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HSPNET_CACHE", str(tmp_path_factory.mktemp("hspnet-cache")))
        wordnet_data.reset_wordnet_cache()
        try:
            reader = wordnet_data.get_wordnet()
        except UserError as exc:
            pytest.fail(f"WordNet data missing (make test installs it): {exc}")
        yield reader
    wordnet_data.reset_wordnet_cache()  # later tests must not read from this module's temp cache
    nltk.data.path[:] = saved_path


def specs(*names: str) -> list[LabelSpec]:
    return [LabelSpec(name) for name in names]


def ari_against(reference: str, n_groups: int | None = None) -> float:
    ref = load_taxonomy(reference)
    labels = load_label_list(reference)
    built, _ = build_wordnet_taxonomy(labels, n_groups=n_groups or ref.num_groups)
    truth, got = ref.group_of(), built.group_of()
    return adjusted_rand_score([truth[s.name] for s in labels], [got[s.name] for s in labels])


# --- getting a reader ---------------------------------------------------------------------------


def _no_nltk_corpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine where NLTK's data path has no WordNet (and undo path registrations)."""
    monkeypatch.setattr(wordnet_data, "_nltk_corpus_root", lambda: None)
    monkeypatch.setattr(wordnet_data.nltk.data, "path", list(nltk.data.path))


def test_missing_wordnet_error_names_both_ways_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _no_nltk_corpus(monkeypatch)
    monkeypatch.setenv("HSPNET_WORDNET_DIR", str(tmp_path / "no-such-folder"))
    monkeypatch.setenv("HSPNET_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UserError) as info:
        wordnet_data.load_wordnet()
    message = str(info.value)
    assert "python -m nltk.downloader wordnet" in message
    assert "apt-get install wordnet-base wordnet-sense-index" in message
    assert "\n" not in message


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HSPNET_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert wordnet_data.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("HSPNET_CACHE")
    assert wordnet_data.cache_dir() == tmp_path / "xdg" / "hspnet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert wordnet_data.cache_dir() == Path.home() / ".cache" / "hspnet"


def test_lexnames_is_the_standard_list() -> None:
    lines = LEXNAMES_TEXT.splitlines()
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3" and lines[3] == "03\tnoun.Tops\t1"
    assert lines[5] == "05\tnoun.animal\t1" and lines[28] == "28\tnoun.time\t1"
    assert lines[29] == "29\tverb.body\t2" and lines[44] == "44\tadj.ppl\t3"


@pytest.mark.skipif(not HAVE_DEBIAN, reason="Debian's wordnet-base is not installed")
def test_debian_files_give_a_working_reader(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _no_nltk_corpus(monkeypatch)
    monkeypatch.delenv("HSPNET_WORDNET_DIR", raising=False)
    reader = wordnet_data.load_wordnet(cache=tmp_path)
    corpus = tmp_path / "nltk_data" / "corpora" / "wordnet"
    assert (corpus / "lexnames").read_text() == LEXNAMES_TEXT
    assert not any(p.name.startswith(".wordnet.") for p in corpus.parent.iterdir())  # no half copies
    assert not any(p.is_symlink() for p in corpus.iterdir())
    assert reader.synset("dog.n.01").lexname() == "noun.animal"
    assert reader.synsets("traffic_light", pos="n")[0].name() == "traffic_light.n.01"
    # A second run reuses the prepared copy instead of copying again.
    stamp = (corpus / "data.noun").stat().st_mtime_ns
    again = wordnet_data.load_wordnet(cache=tmp_path)
    assert again.synset("cat.n.01").lexname() == "noun.animal"
    assert (corpus / "data.noun").stat().st_mtime_ns == stamp


def test_debian_folder_missing_files_is_a_user_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _no_nltk_corpus(monkeypatch)
    broken = tmp_path / "wn"
    broken.mkdir()
    (broken / "data.noun").write_text("")
    with pytest.raises(UserError, match="index.noun"):
        wordnet_data.load_wordnet(cache=tmp_path / "cache", debian_dir=broken)
    assert not (tmp_path / "cache" / "nltk_data" / "corpora" / "wordnet").exists()


# --- resolving labels ---------------------------------------------------------------------------


def test_multiword_plural_and_compound_labels_resolve(wordnet: object) -> None:
    labels = [
        *specs(
            "traffic light",
            "tennis racket",
            "hot dog",
            "fire hydrant",
            "birds",
            "boats",
            "whales",
            "swimmers",
            "sports ball",
            "wine glass",
        ),
        LabelSpec("diningtable"),
        LabelSpec("pottedplant"),
    ]
    _, report = build_wordnet_taxonomy(labels, n_groups=3)
    got = {r.label: (r.synset, r.method) for r in report.labels}
    assert got["traffic light"] == ("traffic_light.n.01", "exact")
    assert got["tennis racket"] == ("tennis_racket.n.01", "exact")
    assert got["fire hydrant"] == ("fireplug.n.01", "exact")
    assert got["hot dog"][1:] == ("exact",) and got["hot dog"][0].startswith("hotdog.n.")
    assert got["birds"] == ("bird.n.01", "morphy")
    assert got["boats"] == ("boat.n.01", "morphy")
    assert got["whales"][0].startswith("whale.n.") and got["whales"][1] == "morphy"
    assert got["swimmers"][0].startswith("swimmer.n.") and got["swimmers"][1] == "morphy"
    assert got["sports ball"] == ("ball.n.01", "head noun")
    assert got["wine glass"] == ("wineglass.n.01", "compound join")
    assert got["diningtable"] == ("dining_table.n.01", "compound split")
    assert got["pottedplant"][1] == "compound split" and got["pottedplant"][0].startswith("plant.n.")
    assert report.unknown == []


def test_senses_follow_the_context(wordnet: object) -> None:
    coco = {r.label: r.synset for r in build_wordnet_taxonomy(load_label_list("coco"), n_groups=12)[1].labels}
    assert coco["kite"] == "kite.n.03"  # the toy, not the hawk or the bad cheque
    assert coco["orange"] == "orange.n.01"  # the fruit
    assert coco["remote"] == "remote_control.n.01"
    assert coco["hot dog"] == "hotdog.n.02"  # the food, not the show-off
    assert coco["banana"] == "banana.n.02" and coco["cake"] == "cake.n.03"  # food, not plant or soap
    assert coco["horse"] == "horse.n.01" and coco["bird"] == "bird.n.01"
    computing = {
        r.label: r.synset
        for r in build_wordnet_taxonomy(specs("keyboard", "laptop", "mouse", "printer"), n_groups=2)[1].labels
    }
    assert computing["mouse"] == "mouse.n.04"
    _, report = build_wordnet_taxonomy(specs("dog", "cat", "mouse"), n_groups=2)
    animals = {r.label: r.synset for r in report.labels}
    assert animals["mouse"] == "mouse.n.01"


def test_pinned_synsets_are_respected(wordnet: object) -> None:
    labels = [LabelSpec("mouse", wordnet="mouse.n.04"), *specs("keyboard", "dog", "cat")]
    taxonomy, report = build_wordnet_taxonomy(labels, n_groups=2)
    assert report.labels[0].synset == "mouse.n.04" and report.labels[0].method == "pinned"
    assert taxonomy.labels[0].wordnet == "mouse.n.04"
    owner = taxonomy.group_of()
    assert owner["mouse"] == owner["keyboard"] != owner["dog"] == owner["cat"]


def test_invalid_pin_names_the_label(wordnet: object) -> None:
    labels = [LabelSpec("gadget", wordnet="gizmo_thing.n.01"), *specs("dog")]
    with pytest.raises(UserError, match="'gadget'.*gizmo_thing.n.01"):
        build_wordnet_taxonomy(labels)


def test_unknown_labels_are_reported_and_grouped_visibly(wordnet: object) -> None:
    labels = specs("dog", "xyzzy", "cat", "car", "qwxzrt blorf", "bus")
    taxonomy, report = build_wordnet_taxonomy(labels, n_groups=2)
    assert report.unknown == ["xyzzy", "qwxzrt blorf"]
    assert taxonomy.groups[UNKNOWN_GROUP] == ["xyzzy", "qwxzrt blorf"]
    assert report.groups[UNKNOWN_GROUP] is None
    assert sum(len(m) for m in taxonomy.groups.values()) == len(labels)
    assert taxonomy.num_groups == 3  # the two asked for, plus the unknown group


# --- the taxonomy -------------------------------------------------------------------------------


def test_label_order_prompts_and_synsets_are_kept(wordnet: object) -> None:
    labels = load_label_list("voc")
    taxonomy, report = build_wordnet_taxonomy(labels, n_groups=4, name="voc-wn")
    assert taxonomy.label_names == [s.name for s in labels]
    assert [s.prompt for s in taxonomy.labels] == [s.prompt for s in labels]
    assert all(s.wordnet == r.synset for s, r in zip(taxonomy.labels, report.labels))
    assert taxonomy.name == "voc-wn" and taxonomy.num_groups == 4
    assert sorted(report.groups) == sorted(taxonomy.groups)
    # Valid in the file format, so `taxonomy.save` accepts it.
    again = taxonomy_from_dict(taxonomy.to_dict())
    assert again.groups == taxonomy.groups


def test_voc_groups_match_the_reference(wordnet: object) -> None:
    taxonomy, _ = build_wordnet_taxonomy(load_label_list("voc"), n_groups=4)
    owner = taxonomy.group_of()
    vehicles = ["aeroplane", "bicycle", "boat", "bus", "car", "motorbike", "train"]
    animals = ["bird", "cat", "cow", "dog", "horse", "sheep"]
    assert len({owner[v] for v in vehicles}) == 1 and len({owner[a] for a in animals}) == 1
    assert owner["person"] not in {owner["dog"], owner["car"], owner["chair"]}
    assert ari_against("voc") > 0.85  # measured 0.918


def test_coco_ari_floor(wordnet: object) -> None:
    assert ari_against("coco") > 0.35  # measured 0.418 (COCO's groups are partly by use, not kind)


def test_default_group_count_is_about_sqrt(wordnet: object) -> None:
    taxonomy, _ = build_wordnet_taxonomy(load_label_list("coco"))
    assert taxonomy.num_groups == 9  # round(sqrt(80))


def test_depth_cut(wordnet: object) -> None:
    labels = specs("dog", "cat", "car", "bus", "person")
    shallow, report = build_wordnet_taxonomy(labels, depth=0)
    assert list(shallow.groups) == ["entity"] and report.groups["entity"] == "entity.n.01"
    deep, _ = build_wordnet_taxonomy(labels, depth=50)  # deeper than any path: each label alone
    assert deep.num_groups == 5
    mid, _ = build_wordnet_taxonomy(labels, depth=6)
    owner = mid.group_of()
    assert owner["dog"] == owner["cat"] != owner["car"] == owner["bus"]


def test_groups_and_depth_together_is_a_user_error() -> None:
    with pytest.raises(UserError, match="not both"):
        build_wordnet_taxonomy(specs("dog", "cat"), n_groups=2, depth=3)


def test_build_is_deterministic(wordnet: object) -> None:
    labels = load_label_list("coco")
    first, _ = build_wordnet_taxonomy(labels, n_groups=12)
    second, _ = build_wordnet_taxonomy(labels, n_groups=12)
    assert first.to_dict() == second.to_dict()


def test_build_is_the_same_in_another_process(wordnet: object) -> None:
    """No set or hash order leaks into the result (string hashing differs between processes)."""
    here, _ = build_wordnet_taxonomy(load_label_list("voc"), n_groups=4)
    code = (
        "from hspnet_cli.taxonomy import load_label_list\n"
        "from hspnet_cli.taxonomy.wordnet_build import build_wordnet_taxonomy\n"
        "print(build_wordnet_taxonomy(load_label_list('voc'), n_groups=4)[0].to_yaml())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == here.to_yaml().strip()


def test_common_hypernym_name(wordnet: object) -> None:
    assert common_hypernym_name(specs("dog", "cat", "horse")) == "placental"
    assert common_hypernym_name(specs("pizza", "hot dog", "sandwich")) == "dish"
    assert common_hypernym_name(specs("apple", "banana")) == "edible fruit"
    assert common_hypernym_name(specs("dog", "car")) is None  # only "whole": too generic
    assert common_hypernym_name(specs("xyzzy")) is None


def test_common_hypernym_name_without_wordnet(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> object:
        raise UserError("WordNet is not installed")

    import hspnet_cli.taxonomy.wordnet_build as wordnet_build

    monkeypatch.setattr(wordnet_build, "get_wordnet", missing)
    assert common_hypernym_name(specs("dog", "cat")) is None


EVERYDAY = Path(__file__).resolve().parent / "data" / "everyday-labels.txt"


@pytest.fixture(scope="module")
def everyday(wordnet: object):
    """A 70-label list of everyday objects, animals and food, as a labeling team writes one."""
    specs_ = load_label_list(EVERYDAY)
    assert len(specs_) == 70
    return specs_, *build_wordnet_taxonomy(specs_, n_groups=8)


def test_whole_phrase_lemmas_come_before_word_guesses(wordnet: object) -> None:
    from hspnet_cli.taxonomy.wordnet_data import lookup_noun_senses

    first = {text: lookup_noun_senses(wordnet, text.split())[0] for text in ("ping pong", "t shirt", "x ray")}
    assert (first["ping pong"][0].name(), first["ping pong"][2]) == ("table_tennis.n.01", "ping-pong")  # not niff
    assert first["t shirt"][0].name() == "jersey.n.03" and first["x ray"][2] == "x_ray"
    # "X of Y": the senses of X whose gloss names Y come first (the cereal's ear, not hearing).
    ear = lookup_noun_senses(wordnet, ["ear", "of", "corn"])
    assert ear[0][0].name() == "ear.n.05" and ear[0][1] == "head noun"


def test_everyday_list_named_cases(everyday) -> None:
    specs_, tax, report = everyday
    got = {r.label: r for r in report.labels}
    group_of = {m: g for g, members in tax.groups.items() for m in members}
    assert got["ping pong"].synset == "table_tennis.n.01"
    assert got["ear of corn"].synset == "ear.n.05"
    assert group_of["ear of corn"] == group_of["banana"] != "psychological feature"
    # octopus and turtle are the animals here, grouped with the dog, not with pizza or clothing.
    assert got["octopus"].synset == "octopus.n.02" and got["turtle"].synset == "turtle.n.02"
    assert group_of["octopus"] == group_of["turtle"] == group_of["dog"] != group_of["pizza"]
    assert not report.unknown and tax.num_groups == 8


def test_low_confidence_choices_are_listed_by_name_and_can_be_pinned(everyday, wordnet: object) -> None:
    specs_, _, report = everyday
    uncertain = report.uncertain()
    names = [r.label for r in uncertain]
    assert names and "octopus" in names and "dog" not in names
    for r in uncertain:  # each rival is a different kind of thing, and it was close
        assert wordnet.synset(r.synset).lexname() != wordnet.synset(r.runner_up).lexname()
        assert 0 <= r.margin < 0.05
    note = report.uncertain_note()
    assert all(f"{r.label} = {r.synset} (over {r.runner_up})" in note for r in uncertain)
    # Pinning a sense settles it: the label is no longer listed.
    pinned = [LabelSpec(s.name, s.prompt, "octopus.n.02" if s.name == "octopus" else s.wordnet) for s in specs_]
    _, again = build_wordnet_taxonomy(pinned, n_groups=8)
    assert "octopus" not in [r.label for r in again.uncertain()]


def test_cli_build_names_the_uncertain_labels(wordnet: object, tmp_path: Path) -> None:
    from conftest import invoke
    from typer.testing import CliRunner

    result = invoke(
        CliRunner(), "taxonomy", "build", "--wordnet", EVERYDAY, "--groups", "8", "-o", tmp_path / "wn.yaml"
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "chose their WordNet sense by a narrow margin" in text and "octopus = octopus.n.02" in text
    assert load_taxonomy(tmp_path / "wn.yaml").labels[34].wordnet == "table_tennis.n.01"  # "ping pong", line 36


# --- issue 18 item 14: the count goes to the largest groups; senses agree with the list ----------

GROUPED_LISTS = Path(__file__).resolve().parent / "data"


def test_count_goes_to_splitting_the_largest_group_not_to_a_lone_label(wordnet: object) -> None:
    """Three groups for ten animals, a mushroom and three vehicles: mammals and birds apart,
    the mushroom in the group it resembles (it was its own group, the animals one of ten)."""
    names = "dog cat horse cow lion eagle owl parrot duck pigeon mushroom car bus truck".split()
    taxonomy, report = build_wordnet_taxonomy(specs(*names), n_groups=3)
    owner = taxonomy.group_of()
    assert taxonomy.num_groups == 3 and min(len(m) for m in taxonomy.groups.values()) > 1
    assert owner["dog"] == owner["lion"] != owner["eagle"] == owner["pigeon"] != owner["car"] == owner["truck"]
    assert report.attached == {"mushroom": owner["mushroom"]} and owner["mushroom"] == owner["dog"]
    assert "mushroom -> " in report.attached_note()


def test_a_label_kin_to_nothing_keeps_its_own_group(wordnet: object) -> None:
    """A car among animals shares only "whole" with them: no group is its home, it stays alone."""
    taxonomy, report = build_wordnet_taxonomy(
        specs(*"dog cat horse cow lion sheep eagle owl parrot duck pigeon car".split()), n_groups=3
    )
    assert taxonomy.groups[taxonomy.group_of()["car"]] == ["car"] and "car" not in report.attached


def test_octopus_is_the_animal_among_animals(wordnet: object) -> None:
    taxonomy, report = build_wordnet_taxonomy(
        specs(*"dog cat horse eagle owl octopus crab lobster jellyfish pizza bread cheese".split()), n_groups=3
    )
    owner = taxonomy.group_of()
    got = {r.label: r for r in report.labels}
    assert got["octopus"].synset == "octopus.n.02" and owner["octopus"] == owner["crab"] != owner["pizza"]
    # Still shown as a close call, with the seafood as the sense to pin if that was meant.
    assert got["octopus"] in report.uncertain() and got["octopus"].runner_up == "octopus.n.01"


@pytest.mark.parametrize(("name", "floor"), [("everyday-61", 0.6), ("everyday-51", 0.75)])
def test_everyday_lists_ari_floor(wordnet: object, name: str, floor: float) -> None:
    """Held-out everyday lists with obvious groups (benchmarks/wordnet_groups.py measures all):
    everyday-61 was 0.473 (mushroom and UFO alone, mammals + birds + fish in one group, octopus
    with the food), now 0.648; everyday-51 0.790 -> 0.785."""
    path = GROUPED_LISTS / f"{name}-groups.yaml"
    ref, labels = load_taxonomy(path), load_label_list(path)
    built, _ = build_wordnet_taxonomy(labels, n_groups=ref.num_groups)
    truth, got = ref.group_of(), built.group_of()
    assert adjusted_rand_score([truth[s.name] for s in labels], [got[s.name] for s in labels]) > floor
    if name == "everyday-61":
        assert got["octopus"] == got["crab"] == got["jellyfish"] != got["pizza"]
