"""Built-in formats, one module each; the registry (``converter.registry``) lists them."""
