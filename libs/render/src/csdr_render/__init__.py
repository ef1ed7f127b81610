"""Render presets (`presets`) and the map links that name them (`links`): the tiler draws what
they describe, the catalog and push link to it, so all three agree on names and URLs."""
