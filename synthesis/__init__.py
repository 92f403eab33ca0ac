"""What the imagine path draws: sampling the generator (grids, diversity) and grading its images
with a separately trained evaluator run (R-precision, Frechet distance; the math is in
:mod:`metrics.synthesis`)."""
