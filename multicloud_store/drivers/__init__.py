"""Built-in drivers: ``memory`` (tests) and ``local`` (the embedded default)."""
