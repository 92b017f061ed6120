"""Detection stage: MediaPipe's SSD detectors (faces, palms)."""
