"""The runtime's own classified failures (awslambdaric's FaultException)."""


class Fault(Exception):
    """A failure the runtime classifies itself: reported with a `Runtime.*` errorType and the given
    message and stack trace."""

    def __init__(self, error_type, message, trace=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace
