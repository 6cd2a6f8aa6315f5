"""The operating system's clock and randomness, as the core's Clock and IdSource ports."""
