"""Measuring a trained model: retrieval, captioning, one-word swaps, synthesis, fused scores,
wrong-pair signals, and the report (Markdown and HTML) train.py and evaluate.py both write."""
