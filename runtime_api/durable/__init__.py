"""Lambda durable functions: executions that checkpoint, suspend and replay (execution.py, the
core; wire.py, the formats; service.py, the trio shell over the store; api.py, the Lambda API)."""
