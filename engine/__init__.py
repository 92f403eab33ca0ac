"""Training machinery shared by train.py and evaluate.py: checkpoints, processes, encoding, reports."""
