"""CSDR Node ingest service."""
