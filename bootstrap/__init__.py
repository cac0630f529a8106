"""lambdalet's Python runtime interface client: the `bootstrap` of provided.al2023 images."""
