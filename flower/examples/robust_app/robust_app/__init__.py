"""A plain PyTorch Flower app aggregated by a fedsentry rule."""
