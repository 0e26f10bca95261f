"""``python -m hspnet_cli`` runs the CLI (also what ``torchrun -m hspnet_cli`` uses)."""

from hspnet_cli.cli import app

app(prog_name="hspnet")
