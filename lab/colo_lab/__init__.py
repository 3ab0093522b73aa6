"""colo.ft lab tooling."""
