"""The API deployable: its settings, its container (the use cases wired to the Redis adapters),
the app that serves corral_http over them, and `corral-api`, the PEX's entry point."""
