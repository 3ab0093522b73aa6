"""One module per benchmark section; each has run(settings) -> dict (JSON-ready)."""
