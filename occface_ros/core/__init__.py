"""The vocabulary every stage shares: labels, rotations, the camera, ROIs and crops, timing.
Nothing here imports a stage."""
