"""Plumbing every CSDR Node service shares: JSON logs, the health routes and the error shape."""
