"""Catalog layer: publication records and their validation, texts and chunking, lexical normalisation, browsing."""
