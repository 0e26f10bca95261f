"""The documentation stays true to the code: the CLI reference is current and no link is broken."""

from __future__ import annotations

import importlib.util
import re
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _reference_module():
    spec = importlib.util.spec_from_file_location("make_cli_reference", DOCS / "make_cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_current():
    expected = _reference_module().render()
    on_disk = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert on_disk == expected, "docs/cli.md is stale: run python docs/make_cli_reference.py"


def test_cli_reference_covers_every_visible_command_and_option():
    """A command or option missing from the reference would make the staleness check meaningless."""
    import typer

    from hspnet_cli.cli import app

    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    missing = []

    def walk(command, path):
        if f"## {' '.join(path)}\n" not in text:
            missing.append(" ".join(path))
        for param in command.params:
            if not param.hidden and param.opts[0].startswith("-") and f"`{param.opts[0]}`" not in text:
                missing.append(f"{' '.join(path)} {param.opts[0]}")
        for name, sub in getattr(command, "commands", {}).items():
            if not sub.hidden:
                walk(sub, [*path, name])

    walk(typer.main.get_command(app), ["hspnet"])
    assert not missing, f"not in docs/cli.md: {missing}"
    for name in ("eval", "tag", "select", "index build", "taxonomy build", "demo run"):
        assert f"## hspnet {name}\n" in text


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


_FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    text = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LN")
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for line in _FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if not match:
            continue
        slug = _slug(match.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def test_relative_links_point_at_existing_files_and_headings():
    broken = []
    checked = 0
    for page in _pages():
        text = _INLINE_CODE.sub("", _FENCE.sub("", page.read_text(encoding="utf-8")))
        for target in _LINK.findall(text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not ours to check offline
                continue
            checked += 1
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            where = f"{page.relative_to(ROOT)}: ({target})"
            if not dest.exists():
                broken.append(f"{where} -> no such file")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{where} -> no heading with anchor #{anchor}")
    assert checked > 30, f"only {checked} relative links found: is the link pattern still right?"
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_is_a_short_tour_that_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300, "README.md is over 300 lines: move the detail to docs/"
    first_block = text.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split()[:2] for line in first_block[:2]] == [["make", "demo"], ["make", "test"]]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:", makefile, re.MULTILINE) and re.search(r"^test:", makefile, re.MULTILINE)
    for page in ("docs/README.md", "docs/cli.md"):
        assert f"]({page})" in text, f"README.md does not link {page}"


_SHELL_BLOCK = re.compile(r"^```(?:bash|sh)?\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _documented_commands(text: str) -> list[str]:
    """Every ``hspnet ...`` (or ``torchrun ... -m hspnet_cli ...``) line of the page's shell blocks."""
    found = []
    for block in _SHELL_BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("hspnet "):
                found.append(line)
            elif " -m hspnet_cli " in line:
                found.append("hspnet " + line.split(" -m hspnet_cli ", 1)[1])
    return found


def test_documented_commands_use_real_commands_and_options():
    """A renamed option or command must not live on in the examples users copy."""
    import shlex

    import typer

    from hspnet_cli.cli import app

    root = typer.main.get_command(app)

    def names(command) -> set[str]:
        return {"-h", "--help"}.union(*([*p.opts, *p.secondary_opts] for p in command.params))

    wrong, checked = [], 0
    for page in _pages():
        if page.name == "cli.md":
            continue
        for line in _documented_commands(page.read_text(encoding="utf-8")):
            checked += 1
            tokens = shlex.split(line, comments=True)
            command, path, allowed = root, ["hspnet"], names(root)
            for token in tokens[1:]:
                subcommands = getattr(command, "commands", None)
                if token.startswith("-"):
                    if token.split("=")[0] not in allowed:
                        wrong.append(f"{page.relative_to(ROOT)}: `{' '.join(path)}` has no option {token}")
                elif subcommands:
                    if token not in subcommands:
                        wrong.append(f"{page.relative_to(ROOT)}: `{' '.join(path)}` has no command {token}")
                        break
                    command = subcommands[token]
                    path.append(token)
                    allowed = names(command) | (names(root) if len(path) == 2 else set())
    assert checked > 40, f"only {checked} documented command lines found: is the block pattern still right?"
    assert not wrong, "documented commands that the CLI does not accept:\n" + "\n".join(wrong)
