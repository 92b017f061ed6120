"""Evaluation harness (`occface eval`): occluded photos, a synthetic sequence, metrics, report.

Protocol: docs/evaluation.md. Modules, each with one job:
- `settings`: what a run covers (FULL, QUICK) and the targets; `photos`: the evaluation photos;
- `metrics`: NME, mask IoU/F1, pose change, jitter; `occluders`: occluders pasted on real photos with
  exact masks; `synthetic`: a rendered, textured ICT face sequence with exact ground truth;
- `results`: reading a FrameResult (matching face, occlusion mask); `reference_column`: MediaPipe's raw
  FaceMesh; `progress`: stage timing and the progress bar;
- `photo_eval`, `jitter_eval`, `synthetic_eval`: the three evaluations;
- `summary`: targets and aggregate rows; `report`: report.md / metrics.json values; `examples`:
  examples.png; `plots`: metrics.png;
- `harness`: runs everything and writes DIR/; `cli`: the `occface eval` command.
"""
