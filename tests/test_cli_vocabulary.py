"""One CLI vocabulary (issue 17): ``--checkpoint`` for a trained model, ``--clip-model`` for an
open_clip architecture, old spellings hidden but working for one release, no ``<bool>`` in help.

Every command's ``--help`` is rendered through the real app. The deprecated spellings are run
through the real app too, with the function the command hands its options to replaced by one that
reports what it received: the old spelling must deliver the same value as the new one, and say once
on stderr that it is deprecated.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from hspnet_cli.cli import app
from hspnet_cli.core.errors import UserError

# Commands that take a trained model; each must spell it --checkpoint.
TAKES_CHECKPOINT = {"eval", "calibrate", "export", "tag", "select", "annotate", "search", "audit"}


def _commands() -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, click command) for the root, every group and every command below them."""

    def walk(path: tuple[str, ...], cmd: Any) -> Iterator[tuple[tuple[str, ...], Any]]:
        yield path, cmd
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            yield from walk((*path, name), sub)

    yield from walk((), typer.main.get_command(app))


def _options(cmd: Any) -> list[Any]:
    return [p for p in cmd.params if p.param_type_name == "option"]


def test_every_help_has_no_bool_and_no_old_spelling() -> None:
    runner = CliRunner()
    seen = 0
    for path, _ in _commands():
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100"}, catch_exceptions=False)
        name = " ".join(("hspnet", *path))
        assert result.exit_code == 0, f"{name} --help: {result.output}"
        assert "<bool>" not in result.stdout, f"{name} --help shows <bool>:\n{result.stdout}"
        for old in ("--model ", "--suggest "):
            assert old not in result.stdout, f"{name} --help shows the deprecated {old.strip()}"
        usage = next(line for line in result.stdout.splitlines() if "Usage:" in line)
        assert "CHECKPOINT" not in usage.upper(), f"{name}: a positional checkpoint is still in the usage line"
        seen += 1
    assert seen >= 20  # root, groups and their commands: the walk really reached them


def test_one_vocabulary_across_commands() -> None:
    have_checkpoint = set()
    for path, cmd in _commands():
        name = " ".join(path) or "hspnet"
        visible = [p for p in _options(cmd) if not p.hidden]
        flags = {opt for p in visible for opt in p.opts}
        assert not flags & {"--model", "--suggest"}, f"{name}: {sorted(flags & {'--model', '--suggest'})} visible"
        for p in visible:
            if "--clip-model" in p.opts:
                assert "open_clip" in (p.help or ""), f"{name}: --clip-model must mean an open_clip model"
            if "--checkpoint" in p.opts:
                have_checkpoint.add(name)
        positionals = [p.name for p in cmd.params if p.param_type_name == "argument" and not p.hidden]
        assert not any("checkpoint" in (n or "") for n in positionals), f"{name}: positional checkpoint"
        for p in _options(cmd):
            if p.hidden:  # hidden options exist only as deprecated spellings of the vocabulary
                assert set(p.opts) <= {"--model", "--suggest"}, f"{name}: unexpected hidden option {p.opts}"
    assert have_checkpoint == TAKES_CHECKPOINT


class _Seen(UserError):
    """Raised by the stand-ins below: what the command passed on."""


def _report(**values: Any) -> Any:
    raise _Seen(" ".join(f"{k}={v}" for k, v in sorted(values.items())))


def _fake_choose_scorer(checkpoint: Any = None, **kw: Any) -> Any:
    _report(checkpoint=checkpoint, clip_model=kw.get("clip_model"), zero_shot=kw.get("zero_shot"))


def _cases(tmp: Path) -> list[tuple[str, list[str], list[str], str, Any]]:
    """(old spelling, argv with it, argv with the new one, function replaced, stand-in)."""
    ckpt, out = str(tmp / "run"), str(tmp / "out")
    data = ["--data", str(tmp / "val.csv"), "--images", str(tmp)]
    scorer = "hspnet_cli.scoring.scorer.choose_scorer"
    return [
        (
            "a positional CHECKPOINT",
            ["eval", ckpt, *data],
            ["eval", "--checkpoint", ckpt, *data],
            scorer,
            _fake_choose_scorer,
        ),
        (
            "--model",
            ["eval", "--zero-shot", "-t", "voc", "--model", "arch-x", *data],
            ["eval", "--zero-shot", "-t", "voc", "--clip-model", "arch-x", *data],
            scorer,
            _fake_choose_scorer,
        ),
        (
            "a positional CHECKPOINT",
            ["calibrate", ckpt, *data, "-o", out + ".json"],
            ["calibrate", "--checkpoint", ckpt, *data, "-o", out + ".json"],
            scorer,
            _fake_choose_scorer,
        ),
        (
            "--model",
            ["calibrate", "--zero-shot", "-t", "voc", "--model", "arch-x", *data, "-o", out + ".json"],
            ["calibrate", "--zero-shot", "-t", "voc", "--clip-model", "arch-x", *data, "-o", out + ".json"],
            scorer,
            _fake_choose_scorer,
        ),
        (
            "a positional CHECKPOINT",
            ["export", ckpt, "-o", out + ".pt"],
            ["export", "--checkpoint", ckpt, "-o", out + ".pt"],
            "hspnet_cli.scoring.export.export_model",
            lambda checkpoint, *a, **kw: _report(checkpoint=checkpoint),
        ),
        (
            "--model",
            ["tag", str(tmp), "-o", out + ".csv", "--model", ckpt],
            ["tag", str(tmp), "-o", out + ".csv", "--checkpoint", ckpt],
            scorer,
            _fake_choose_scorer,
        ),
        (
            "--suggest",
            ["annotate", str(tmp), "-t", "voc", "-o", out + ".jsonl", "--suggest", ckpt],
            ["annotate", str(tmp), "-t", "voc", "-o", out + ".jsonl", "--checkpoint", ckpt],
            scorer,
            _fake_choose_scorer,
        ),
        (
            "--model",
            ["select", str(tmp / "tags.csv"), "-n", "3", "-o", out + ".txt", "--model", ckpt],
            ["select", str(tmp / "tags.csv"), "-n", "3", "-o", out + ".txt", "--checkpoint", ckpt],
            "hspnet_cli.selection.select_images",
            lambda tags, options, **kw: _report(model=options.model),
        ),
        (
            "--model",
            ["search", str(tmp / "i.faiss"), "--text", "a dog", "--device", "cpu", "--model", ckpt],
            ["search", str(tmp / "i.faiss"), "--text", "a dog", "--device", "cpu", "--checkpoint", ckpt],
            "hspnet_cli.index.search.run_search",
            lambda index, **kw: _report(model=kw["model"]),
        ),
        (
            "--model",
            ["train", "--split", str(tmp), "--images", str(tmp), "-o", out, "--model", "arch-x"],
            ["train", "--split", str(tmp), "--images", str(tmp), "-o", out, "--clip-model", "arch-x"],
            "hspnet_cli.train.loop.train",
            lambda *a, **kw: _report(clip_model=a[3].model.clip_model),
        ),
        (
            "--model",
            ["taxonomy", "build", "voc", "--kmeans", "-o", out + ".yaml", "--model", "arch-x"],
            ["taxonomy", "build", "voc", "--kmeans", "-o", out + ".yaml", "--clip-model", "arch-x"],
            "hspnet_cli.model.clip_models.label_encoder",
            lambda model_name, *a, **kw: _report(model=model_name),
        ),
    ]


@pytest.mark.parametrize("index", range(11))
def test_deprecated_spelling_still_works(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, old_argv, new_argv, target, stand_in = _cases(tmp_path)[index]
    monkeypatch.setattr(target, stand_in)
    new_name = new_argv[next(i for i, a in enumerate(new_argv) if a not in old_argv)]
    runner = CliRunner()
    got_new = runner.invoke(app, new_argv, catch_exceptions=False)
    got_old = runner.invoke(app, old_argv, catch_exceptions=False)
    assert got_new.exit_code == 2 and "is deprecated" not in got_new.stderr, got_new.output
    passed_on = got_new.stderr.strip().splitlines()[-1]
    assert "arch-x" in passed_on or str(tmp_path / "run") in passed_on, passed_on  # the value did reach the stand-in
    # The old spelling delivers the same value, with one deprecation line naming the new spelling.
    assert got_old.exit_code == 2, got_old.output
    assert got_old.stderr.strip().splitlines()[-1] == passed_on
    warnings = [line for line in got_old.stderr.splitlines() if "is deprecated" in line]
    assert warnings == [f"warning: {old} is deprecated; use {new_name}"], got_old.stderr


def test_old_and_new_spelling_must_agree(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "tag",
            str(tmp_path),
            "-o",
            str(tmp_path / "t.csv"),
            "--checkpoint",
            str(tmp_path / "a"),
            "--model",
            str(tmp_path / "b"),
        ],
    )
    assert result.exit_code == 2 and "give --checkpoint once (--model is its old spelling)" in result.stderr


def test_which_scorer_rules(runner: CliRunner, tmp_path: Path) -> None:
    """The rules of choose_scorer, the same wording in every command that scores images."""
    data = ["--data", str(tmp_path / "v.csv"), "--images", str(tmp_path)]
    both = runner.invoke(app, ["eval", "--checkpoint", str(tmp_path / "m"), "--zero-shot", "-t", "voc", *data])
    assert both.exit_code == 2 and "give --checkpoint or --zero-shot, not both" in both.stderr
    for argv in (["eval", *data], ["tag", str(tmp_path), "-o", str(tmp_path / "t.csv")]):
        neither = runner.invoke(app, argv)
        assert neither.exit_code == 2 and "give --checkpoint (a run folder" in neither.stderr, neither.output
    no_tax = runner.invoke(app, ["calibrate", "--zero-shot", *data, "-o", str(tmp_path / "t.json")])
    assert no_tax.exit_code == 2 and "--zero-shot needs --taxonomy" in no_tax.stderr
    both = runner.invoke(
        app,
        [
            "annotate",
            str(tmp_path),
            "-t",
            "voc",
            "-o",
            str(tmp_path / "l.jsonl"),
            "--checkpoint",
            str(tmp_path / "m"),
            "--zero-shot",
        ],
    )
    assert both.exit_code == 2 and "not both" in both.stderr
