"""HTTP routes of the push service."""
