"""CRESDA scene packages: recognising them, reading their metadata, and describing their bands."""
