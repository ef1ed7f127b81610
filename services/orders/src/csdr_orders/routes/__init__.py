"""The orders API routes."""
