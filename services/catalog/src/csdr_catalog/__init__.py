"""CSDR Node catalog service."""
