"""Write docs/cli.md, the reference of every ``hspnet`` command, from the Typer app itself.

Run ``python docs/make_cli_reference.py`` after changing a command, an option or a help text;
``tests/test_docs.py`` regenerates the text in memory and fails while the file is stale.

The text is built from the command objects (names, parameters, help strings, defaults), never
from rendered ``--help`` output, so it does not depend on the terminal's width, colours or the
machine it runs on. Hidden commands and hidden options (deprecated spellings kept for a
release) are left out.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REFERENCE = Path(__file__).resolve().parent / "cli.md"

_TYPE_NAMES = {bool: "flag", int: "integer", float: "number", str: "text", Path: "path"}


def _type_name(param: Any) -> str:
    """A short word for what a parameter takes (``path``, ``integer``, ``path, repeatable``...)."""
    if getattr(param, "is_flag", False):
        return "flag"
    annotation = param.type_descriptor.annotation
    repeatable = bool(getattr(annotation, "__args__", None)) and getattr(annotation, "__origin__", None) is list
    if repeatable:
        annotation = annotation.__args__[0]
    name = _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))
    choices = param.type_descriptor.choices
    if choices:
        name = " \\| ".join(str(getattr(c, "value", c)) for c in choices)
    if repeatable or param.multiple:
        name += ", repeatable"
    return name


def _default(param: Any) -> str:
    """The default as a reader would type it; empty when there is none worth showing."""
    if param.required:
        return "required"
    if isinstance(param.show_default, str):  # a command's own words for a computed default
        return param.show_default
    if param.show_default is False:
        return ""
    default = param.default
    if callable(default):
        return "computed"
    if getattr(param, "secondary_opts", None) and isinstance(default, bool):
        return param.opts[0] if default else param.secondary_opts[0]
    if default is None or default is False or default == [] or default == ():
        return ""
    if default is True:
        return "on"
    if isinstance(default, (list, tuple)):
        return ", ".join(str(d) for d in default)
    return str(getattr(default, "value", default))


def _cell(text: str) -> str:
    """Text safe inside one Markdown table cell (one line, no unescaped pipe)."""
    return " ".join(text.split()).replace("|", "\\|")


def _is_argument(param: Any) -> bool:
    return not param.opts or not param.opts[0].startswith("-")


def _usage(path: list[str], command: Any) -> str:
    """``hspnet eval [OPTIONS] [CHECKPOINT]``: built from the parameters, not from click's formatter."""
    pieces = [" ".join(path)]
    if any(not _is_argument(p) for p in command.params if not p.hidden):
        pieces.append("[OPTIONS]")
    for param in command.params:
        if param.hidden or not _is_argument(param):
            continue
        word = param.name.upper()
        if param.nargs == -1:
            word += "..."
        pieces.append(word if param.required else f"[{word}]")
    if _subcommands(command):
        pieces.append("COMMAND [ARGS]...")
    return " ".join(pieces)


def _subcommands(command: Any) -> list[tuple[str, Any]]:
    """Visible subcommands of a group, in the order the app registered them."""
    return [(name, sub) for name, sub in getattr(command, "commands", {}).items() if not sub.hidden]


def _help(command: Any) -> str:
    return inspect.cleandoc(command.help or "").strip()


def _command_section(path: list[str], command: Any) -> Iterable[str]:
    yield f"## {' '.join(path)}"
    yield ""
    if _help(command):
        yield _help(command)
        yield ""
    yield "```"
    yield _usage(path, command)
    yield "```"
    yield ""
    params = [p for p in command.params if not p.hidden]
    arguments = [p for p in params if _is_argument(p)]
    options = [p for p in params if not _is_argument(p)]
    if arguments:
        yield "| argument | takes | default | what it is |"
        yield "| --- | --- | --- | --- |"
        for p in arguments:
            yield f"| `{p.name.upper()}` | {_cell(_type_name(p))} | {_cell(_default(p))} | {_cell(p.help or '')} |"
        yield ""
    if options:
        yield "| option | takes | default | what it does |"
        yield "| --- | --- | --- | --- |"
        for p in options:
            names = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
            yield f"| {names} | {_cell(_type_name(p))} | {_cell(_default(p))} | {_cell(p.help or '')} |"
        yield ""
    subs = _subcommands(command)
    if subs:
        yield "| command | what it does |"
        yield "| --- | --- |"
        for name, sub in subs:
            first = _help(sub).split("\n\n")[0]
            anchor = "-".join([*path, name]).replace(" ", "-")
            yield f"| [`{name}`](#{anchor}) | {_cell(first)} |"
        yield ""
    for name, sub in subs:
        yield from _command_section([*path, name], sub)


def render() -> str:
    """The whole reference as Markdown text (what docs/cli.md must hold)."""
    import typer

    from hspnet_cli.cli import app

    root = typer.main.get_command(app)
    lines = [
        "# hspnet command reference",
        "",
        "<!-- Generated by docs/make_cli_reference.py from the Typer app; do not edit by hand. -->",
        "",
        "Every command also takes `-h` / `--help`. Errors a user can fix are one line on stderr",
        "and exit status 2. The pages of [the docs index](README.md) explain what the commands do.",
        "",
    ]
    lines.extend(_command_section(["hspnet"], root))
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> int:
    """Write docs/cli.md when its text changed; print what was done."""
    text = render()
    if REFERENCE.exists() and REFERENCE.read_text(encoding="utf-8") == text:
        print(f"{REFERENCE} is up to date")
        return 0
    tmp = REFERENCE.with_name(f".{REFERENCE.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(REFERENCE)  # atomic: a reader never sees half a reference
    print(f"wrote {REFERENCE}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REFERENCE.parent.parent))  # the checkout's package, wherever it is run from
    sys.exit(main())
