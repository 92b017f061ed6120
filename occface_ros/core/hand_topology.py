"""MediaPipe's 21-point hand topology: 0 wrist; thumb 1 CMC, 2 MCP, 3 IP, 4 tip; index 5-8,
middle 9-12, ring 13-16, pinky 17-20 (MCP, PIP, DIP, tip)."""

WRIST = 0
THUMB_CMC, THUMB_MCP = 1, 2
INDEX_MCP, MIDDLE_MCP, RING_MCP, PINKY_MCP = 5, 9, 13, 17
BONE_PARENTS = (0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)  # parent of landmark 1..20
FINGERS = ((5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))  # MCP, PIP, DIP, tip
