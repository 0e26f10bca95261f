"""Built-in taxonomies (data only). Installed as ``hspnet_cli._builtin_taxonomies``."""
