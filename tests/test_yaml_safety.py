"""Every YAML hspnet reads is bounded (issue 11, item 4), JSON taxonomies load (issue 10), and
label names that would make ``;`` lists ambiguous are refused at load (issue 11, item 10)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import invoke
from typer.testing import CliRunner

from hspnet_cli.core.errors import UserError
from hspnet_cli.taxonomy import list_builtin, load_label_list, load_taxonomy

ROOT = Path(__file__).resolve().parents[1]


def billion_laughs(levels: int) -> str:
    """The classic alias bomb: each level is nine aliases of the one before (9**levels leaves)."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\nlabels: *a{levels}\ngroups: {{g: *a{levels}}}\n"


# What each reader is called through, in a fresh interpreter so a blow-up cannot take the test run with it.
READERS = {
    "taxonomy": "from hspnet_cli.taxonomy import load_taxonomy as f; f(P)",
    "label list": "from hspnet_cli.taxonomy import load_label_list as f; f(P)",
    "config": "from hspnet_cli.config import load_config as f; f(P)",
    "split.yaml": "from hspnet_cli.data import read_split_yaml as f; f(Path(P).parent)",
    "--set": ("from hspnet_cli.commands.train_cmd import _parse_set as f;f(['model.n_ctx=' + Path(P).read_text()])"),
}


def _run_bounded(code: str, path: Path, limit_s: float = 60.0) -> tuple[float, subprocess.CompletedProcess]:
    program = (
        "import sys; from pathlib import Path; from hspnet_cli.core.errors import UserError\nP = sys.argv[1]\n"
        f"try:\n    {code}\nexcept UserError as exc:\n    print(exc, file=sys.stderr); sys.exit(2)\n"
    )
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-c", program, str(path)],
            capture_output=True,
            text=True,
            timeout=limit_s,
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading an alias bomb ran past {limit_s:.0f} s: it is expanded, not refused")
    return time.perf_counter() - start, done


@pytest.mark.parametrize("reader", list(READERS))
def test_alias_bombs_are_refused_fast_with_one_short_line(tmp_path: Path, reader: str) -> None:
    name = "split.yaml" if reader == "split.yaml" else "bomb.yaml"
    path = tmp_path / name
    path.write_text(("hspnet_split: 1\n" if reader == "split.yaml" else "") + billion_laughs(9))
    assert path.stat().st_size < 1024
    elapsed, done = _run_bounded(READERS[reader], path)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) < 300, done.stderr[:500]
    assert "alias" in lines[0] and ("bomb.yaml" in lines[0] or "split.yaml" in lines[0] or reader == "--set")
    # a 2-core shared machine starts Python in ~1-3 s; expanding the bomb takes minutes and gigabytes
    assert elapsed < 30, f"took {elapsed:.1f} s"


def test_the_taxonomy_command_refuses_a_bomb_through_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(billion_laughs(9))
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "hspnet_cli", "taxonomy", "validate", str(path)],
            capture_output=True,
            text=True,
            timeout=90,
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "COLUMNS": "300"},
        )
    except subprocess.TimeoutExpired:
        pytest.fail("hspnet taxonomy validate on a 1 KB alias bomb ran past 90 s")
    assert time.perf_counter() - start < 45
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and f"{path}:" in done.stderr


def test_small_legitimate_aliases_still_load(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("labels: &all [cat, dog, bird]\ngroups:\n  animals: *all\n")
    tax = load_taxonomy(path)
    assert tax.label_names == ["cat", "dog", "bird"] and tax.groups == {"animals": ["cat", "dog", "bird"]}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("labels: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than"),
        ("labels: &a [cat, *a]\n", "refers to itself"),
        ("labels: [cat]\ngroups: !!python/object/apply:os.system [echo hi]\n", "not valid YAML"),
    ],
)
def test_deep_recursive_and_unsafe_yaml_are_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_taxonomy(path)
    assert expected in str(info.value) and str(info.value).startswith(f"{path}:") and "\n" not in str(info.value)


def test_a_huge_file_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with open(path, "w") as fh:
        fh.write("labels:\n")
        line = "- " + "x" * 1000 + "\n"
        for _ in range(17 * 1024):
            fh.write(line)
    for load in (load_taxonomy, load_label_list):
        with pytest.raises(UserError, match=rf"^{path}: .*larger than 16 MiB"):
            load(path)
    from hspnet_cli.config import load_config

    with pytest.raises(UserError, match="larger than 16 MiB"):
        load_config(path)


def test_errors_about_big_values_stay_short(runner: CliRunner, tmp_path: Path) -> None:
    big = "[" + ", ".join(str(i) for i in range(3000)) + "]"
    path = tmp_path / "t.yaml"
    path.write_text(f"name: {big}\nlabels:\n- {big}\n- {big}\ngroups: {{g: [{big}]}}\n")
    result = invoke(runner, "taxonomy", "validate", path)
    assert result.exit_code == 2 and len(result.stderr) < 3000, len(result.stderr)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model:\n  n_ctx: {big}\n")
    from hspnet_cli.config import load_config

    with pytest.raises(UserError) as info:
        load_config(cfg)
    assert len(str(info.value)) < 400


# --- JSON taxonomies (issue 10) -------------------------------------------------------------------


def test_a_json_taxonomy_loads_with_line_numbers(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(
        json.dumps(
            {"name": "j", "labels": ["cat", {"name": "dog", "prompt": "a dog"}], "groups": {"animals": ["cat", "dog"]}},
            indent=2,
        )
    )
    tax = load_taxonomy(path)
    assert tax.label_names == ["cat", "dog"] and tax.labels[1].prompt == "a dog"
    assert load_label_list(path)[0].name == "cat"
    assert invoke(runner, "taxonomy", "validate", path).exit_code == 0
    path.write_text('{\n  "labels": ["cat", "dog"],\n  "groups": {\n    "a": ["cat", "dgo"]\n  }\n}\n')
    result = invoke(runner, "taxonomy", "validate", path)
    assert result.exit_code == 2 and f"{path}:4: group 'a' lists 'dgo'" in result.stderr
    # JSON that YAML 1.1 cannot read (tab indentation) still loads; duplicate keys are still refused
    path.write_text('{\n\t"labels": ["cat"],\n\t"groups": {"a": ["cat"]}\n}\n')
    assert load_taxonomy(path).label_names == ["cat"]
    path.write_text('{\n\t"labels": ["cat"],\n\t"groups": {"a": ["cat"]},\n\t"groups": {"b": ["cat"]}\n}\n')
    with pytest.raises(UserError, match="duplicate key 'groups'"):
        load_taxonomy(path)
    path.write_text('{"labels": ["cat"],\n "groups": {"a" ["cat"]}}\n')
    with pytest.raises(UserError, match=rf"^{path}:2:\d+: not valid JSON"):
        load_taxonomy(path)


# --- label names that make ';' lists ambiguous ----------------------------------------------------


@pytest.mark.parametrize("name, shown", [("rock;roll", "';'"), ("tab\\there", "tab"), ("new\\nline", "line break")])
def test_label_names_with_the_tags_separator_are_refused_at_load(tmp_path: Path, name: str, shown: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(f'labels:\n- cat\n- "{name}"\ngroups:\n  g: [cat, "{name}"]\n')
    with pytest.raises(UserError) as info:
        load_taxonomy(path)
    assert str(info.value).startswith(f"{path}:3: ") and shown in str(info.value)
    text = tmp_path / "labels.txt"
    text.write_text("cat\nrock;roll\n")
    with pytest.raises(UserError, match=rf"^{text}:2: .*';'"):
        load_label_list(text)


@pytest.mark.parametrize("name", list_builtin())
def test_builtins_hold_no_ambiguous_label_names(name: str) -> None:
    tax = load_taxonomy(name)
    assert not [n for n in tax.label_names if ";" in n or any(ord(c) < 32 for c in n)]
