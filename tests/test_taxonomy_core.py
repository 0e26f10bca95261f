"""Taxonomy file format: loading, every validation error, built-ins, labels-only inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hspnet_cli.core.errors import UserError
from hspnet_cli.taxonomy import Taxonomy, TaxonomyError, list_builtin, load_label_list, load_taxonomy


def write(tmp_path: Path, text: str, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = """\
name: tiny
labels:
- cat
- {name: dog, prompt: a dog, wordnet: dog.n.01}
- car
groups:
  animals: [cat, dog]
  vehicles: [car]
"""


def test_good_file_loads_with_order_prompts_and_groups(tmp_path: Path) -> None:
    tax = load_taxonomy(write(tmp_path, GOOD))
    assert tax.label_names == ["cat", "dog", "car"]
    assert tax.labels[1].prompt == "a dog" and tax.labels[1].wordnet == "dog.n.01"
    assert tax.labels[1].text == "a dog" and tax.labels[0].text == "cat"
    assert tax.groups == {"animals": ["cat", "dog"], "vehicles": ["car"]}
    assert tax.group_index().tolist() == [0, 0, 1]
    assert tax.label_index("car") == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a label in no group
        ("labels: [cat, dog]\ngroups:\n  a: [cat]\n", "label 'dog' is in no group"),
        # a label in two groups (with the line of the second listing)
        (
            "labels: [cat, dog]\ngroups:\n  a: [cat, dog]\n  b: [dog]\n",
            "t.yaml:4: label 'dog' is in group 'b' and already in group 'a'",
        ),
        # empty group
        ("labels: [cat]\ngroups:\n  a: [cat]\n  b: []\n", "t.yaml:4: group 'b' is empty"),
        ("labels: [cat]\ngroups:\n  a: [cat]\n  b:\n", "group 'b' is empty"),
        # duplicate label
        (
            "labels:\n- cat\n- dog\n- cat\ngroups:\n  a: [cat, dog]\n",
            "t.yaml:4: label 'cat' is listed twice (first at line 2)",
        ),
        # labels differing only in case
        ("labels: [Cat, cat]\ngroups:\n  a: [Cat, cat]\n", "differs from label 'Cat' only in case"),
        # duplicate group (YAML would silently keep the last one)
        ("labels: [cat, dog]\ngroups:\n  a: [cat]\n  a: [dog]\n", "t.yaml:4: duplicate key 'a' (first at line 3)"),
        # unknown member
        ("labels: [cat]\ngroups:\n  a: [cat, dgo]\n", "t.yaml:3: group 'a' lists 'dgo', which is not in 'labels'"),
        # empty names
        ("labels: ['cat', '  ']\ngroups:\n  a: [cat]\n", "label 1 is empty"),
        ("labels: [cat]\ngroups:\n  '': [cat]\n", "group name is empty"),
        ("labels: [cat]\ngroups:\n  a: [cat, '']\n", "a member of group 'a' is empty"),
        # structure
        ("labels: []\ngroups:\n  a: [cat]\n", "'labels' must be a non-empty list"),
        ("groups:\n  a: [cat]\n", "no 'labels' list"),
        ("labels: [cat]\n", "no 'groups' mapping"),
        ("labels: [cat]\ngroups: [cat]\n", "'groups' must be a non-empty mapping"),
        ("labels: [cat]\ngroup:\n  a: [cat]\n", "unknown key 'group'"),
        ("- cat\n- dog\n", "must be a YAML mapping"),
        ("labels: [cat\n", "t.yaml:2: not valid YAML"),
        ("labels:\n- {name: cat, wordnet: cat}\ngroups:\n  a: [cat]\n", "is not of the form lemma.n.01"),
        ("labels:\n- {name: cat, colour: red}\ngroups:\n  a: [cat]\n", "unknown field(s) ['colour']"),
        ("labels: [cat, 3]\ngroups:\n  a: [cat]\n", "label 1 must be text"),
    ],
)
def test_validation_errors_name_file_line_and_fix(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(UserError) as info:
        load_taxonomy(write(tmp_path, text))
    assert expected in str(info.value)
    assert str(tmp_path / "t.yaml") in str(info.value)


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    text = "labels: [cat, dog, car]\ngroups:\n  a: [cat, bus]\n  b: []\n"
    with pytest.raises(TaxonomyError) as info:
        load_taxonomy(write(tmp_path, text))
    message = str(info.value)
    assert "'bus'" in message and "group 'b' is empty" in message
    assert "label 'dog' is in no group" in message and "label 'car' is in no group" in message


def test_missing_file_and_unknown_builtin(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no built-in taxonomy of that name"):
        load_taxonomy("cooc")
    with pytest.raises(UserError, match="no such file"):
        load_taxonomy(tmp_path / "missing.yaml")


EXPECTED_COUNTS = {"coco": (80, 12), "voc": (20, 4), "nuswide": (81, 6), "cub": (312, 20)}


@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTS))
def test_builtins_load_with_exact_counts(name: str) -> None:
    tax = load_taxonomy(name)
    assert (tax.num_labels, tax.num_groups) == EXPECTED_COUNTS[name]
    assert sum(len(m) for m in tax.groups.values()) == tax.num_labels


def test_builtin_label_order_is_exact() -> None:
    voc = load_taxonomy("voc")
    assert voc.label_names == [
        "aeroplane",
        "bicycle",
        "bird",
        "boat",
        "bottle",
        "bus",
        "car",
        "cat",
        "chair",
        "cow",
        "diningtable",
        "dog",
        "horse",
        "motorbike",
        "person",
        "pottedplant",
        "sheep",
        "sofa",
        "train",
        "tvmonitor",
    ]
    assert voc.group_names == ["vehicles", "household", "animals", "person"]
    coco = load_taxonomy("coco")
    assert coco.label_names[:5] == ["person", "bicycle", "car", "motorcycle", "airplane"]
    assert coco.label_names[-3:] == ["teddy bear", "hair drier", "toothbrush"]
    assert coco.label_index("traffic light") == 9
    cub = load_taxonomy("cub")
    assert cub.label_names[4] == "hooked_seabird bill" and cub.labels[4].prompt == "hooked seabird bill"
    assert list_builtin() == ["coco", "cub", "nuswide", "voc"]


def test_save_round_trip_with_group_features(tmp_path: Path) -> None:
    tax = load_taxonomy("voc")
    tax.group_features = np.arange(8, dtype=np.float32).reshape(4, 2) / 7
    tax.group_features_source = "test"
    tax.save(tmp_path / "out.yaml")
    back = load_taxonomy(tmp_path / "out.yaml")
    assert back.label_names == tax.label_names and back.groups == tax.groups
    assert back.labels[10].prompt == "dining table"
    np.testing.assert_allclose(back.group_features, tax.group_features, rtol=1e-5)
    assert not list(tmp_path.glob(".*tmp")), "no temporary file left behind"


def test_save_refuses_an_invalid_taxonomy_and_writes_nothing(tmp_path: Path) -> None:
    tax = Taxonomy(name="bad", labels=load_taxonomy("voc").labels, groups={"all": ["cat"]})
    with pytest.raises(TaxonomyError):
        tax.save(tmp_path / "bad.yaml")
    assert list(tmp_path.iterdir()) == []


def test_label_lists_plain_text_yaml_and_builtin(tmp_path: Path) -> None:
    txt = write(tmp_path, "# my labels\ntraffic light\n\nmouse = mouse.n.04\nbirds\n", "labels.txt")
    specs = load_label_list(txt)
    assert [s.name for s in specs] == ["traffic light", "mouse", "birds"]
    assert specs[1].wordnet == "mouse.n.04"
    only = write(tmp_path, "labels: [a, b]\n", "only.yaml")
    assert [s.name for s in load_label_list(only)] == ["a", "b"]
    assert len(load_label_list("coco")) == 80


def test_label_list_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"labels.txt:3: label 'cat' is listed twice \(first at line 1\)"):
        load_label_list(write(tmp_path, "cat\ndog\ncat\n", "labels.txt"))
    with pytest.raises(UserError, match="no labels found"):
        load_label_list(write(tmp_path, "# nothing\n\n", "empty.txt"))
    with pytest.raises(UserError, match="not of the form"):
        load_label_list(write(tmp_path, "cat = feline\n", "pins.txt"))
