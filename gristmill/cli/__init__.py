"""The `gristmill` command: standalone (the pipeline in this process) or a client of a running service."""
