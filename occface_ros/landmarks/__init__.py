"""Landmark stage: FaceMesh 468 per face, mapped to iBUG 68 and to the model's vertices."""
