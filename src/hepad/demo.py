"""`make demo`: the main job end to end (filled in as the issues land)."""
