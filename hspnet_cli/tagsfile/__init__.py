"""The tags output formats of ``hspnet tag`` (this branch adds only :mod:`.parquet`)."""
