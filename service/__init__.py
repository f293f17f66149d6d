"""HTTP layer over the engine: routes translate requests to engine calls and nothing more."""
