"""The ground floor: errors, console output, atomic files, output locks, bounded YAML, device and
thread choice, progress bars. Everything above may import it; it imports nothing of hspnet's
but itself."""

from __future__ import annotations

from hspnet_cli.core.lazy import lazy_exports

# Public name -> the module of this room that defines it (imported on first use).
_EXPORTS = {
    "atomic_write": "io_utils",
    "epoch_progress": "progress",
    "intra_op_threads": "device",
    "intra_op_threads_set": "device",
    "is_quiet": "console",
    "is_rank_zero": "locks",
    "ItemProgress": "progress",
    "LineProgress": "progress",
    "load_yaml": "safe_yaml",
    "load_yaml_file": "safe_yaml",
    "NoBar": "progress",
    "output_error": "io_utils",
    "output_errors": "io_utils",
    "output_lock": "locks",
    "OutputError": "io_utils",
    "print_json": "console",
    "read_json_object": "io_utils",
    "read_yaml_text": "safe_yaml",
    "replace_dir": "io_utils",
    "resolve_amp": "device",
    "resolve_device": "device",
    "say": "console",
    "setup_logging": "console",
    "staging_dir": "io_utils",
    "tune_for_cuda": "device",
    "usable_cores": "device",
    "UserError": "errors",
    "write_bytes_atomic": "io_utils",
    "write_text_atomic": "io_utils",
}
__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)
