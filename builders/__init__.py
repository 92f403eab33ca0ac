"""Making dataset files from raw inputs: Karpathy-format sets rendered from icon collections
(``python -m data build-icons``) and CNN feature files (``python -m data extract``)."""
