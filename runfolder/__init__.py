"""A run's folder: the name of every file a run writes, checkpoints (atomic, ``weights_only``) and
loading a trained run back."""
