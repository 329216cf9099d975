"""The settings of a set of rooms that the command line shows: importing this costs nothing."""

DEPTH_SCALE_M = 0.4  # inverse depth 1 at 0.4 m: nearer than anything a room's camera is placed at
RENDERERS = ("auto", "egl", "numpy")
ROOMS_JSON = "rooms.json"  # beside the rooms: the set's renderer, seed, size, textures and depth scale
