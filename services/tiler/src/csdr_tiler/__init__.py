"""CSDR Node tiler service."""
