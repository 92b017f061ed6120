"""Occlusion reasoning (the paper's parsing maps and Algorithm 1, evidence, occlusion-aware fit)."""
