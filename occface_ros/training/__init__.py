"""Training: the data engine and training loops of the learned stages (landmarks, parser,
de-occlusion). Nothing here runs on the pipeline's hot path."""
