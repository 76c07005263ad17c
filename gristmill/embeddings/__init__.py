"""The embeddings server: the model in one long-lived process, behind an OpenAI-compatible API."""
