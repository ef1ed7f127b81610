"""CSDR Node federation: the change feed other nodes pull, and the worker that mirrors peers."""
