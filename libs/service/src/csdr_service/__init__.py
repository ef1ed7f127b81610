"""Plumbing every CSDR Node service shares: JSON logs and the /healthz + /readyz routes."""
