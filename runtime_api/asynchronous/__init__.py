"""Asynchronous invocation as Lambda does it: each Event invocation committed to the store before
its 202 (queue.py), retried and aged by Lambda's rules (policy.py), its records sent to destinations
and dead-letter queues (destinations.py), configured through the Lambda API (api.py) or a function's
settings (invoke_config.py), and looked at with `lambdalet events` (events.py)."""
