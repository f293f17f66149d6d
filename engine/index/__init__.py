"""Index layer: what a build is made of and how it is made and stored (vector index, catalog adaptation, language
calibration, neighbour lists, overrides).
"""
