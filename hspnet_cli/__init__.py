"""hspnet: hierarchical prompt learning on CLIP for multi-label tagging from cheap labels."""

__version__ = "0.1.0"
