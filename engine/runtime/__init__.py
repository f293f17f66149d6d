"""Runtime layer: the build in service (loading, reloading, watching) and catalog writes."""
