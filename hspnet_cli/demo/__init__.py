"""The demo world: generated multi-label images with a known hierarchy, and the demo pipeline."""
