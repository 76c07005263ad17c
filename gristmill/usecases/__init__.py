"""What the REST API and the CLI both do: submit sources, search, manage libraries, start flow runs."""
