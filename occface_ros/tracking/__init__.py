"""Tracking stage: face and hand tracks between frames, and the per-track state."""
