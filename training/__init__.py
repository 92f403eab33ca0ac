"""Training steps: the ranking, look (caption decoder) and imagine (GAN) terms, robust weighting,
semi-supervised stage 2, distributed helpers and the schedule watch."""
