"""De-occlusion: the paper's FISN generator (fisn.py) and its per-frame stage (stage.py)."""
