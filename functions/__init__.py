"""Lambda code: one thin handler module per function, shared services in ``functions.common``."""
