"""Encode layer: the embedding models (registry, preparation, the USE module, the topic adapter) and the only code that
runs them.
"""
