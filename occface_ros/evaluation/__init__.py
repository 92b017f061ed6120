"""Evaluation harness (`occface eval`): occluded photos, a synthetic sequence, metrics, report.

Modules: `metrics` (NME, mask IoU/F1, pose change, jitter), `occluders` (occluders pasted on real
photos with exact masks), `synthetic` (a rendered, textured ICT face sequence with exact ground
truth), `harness` (runs everything and writes DIR/report.md, metrics.json, examples.png,
metrics.png). Protocol: docs/evaluation.md.
"""
