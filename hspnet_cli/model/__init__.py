"""HSPNet and its baselines on open_clip: prompts, graphs, scores."""
