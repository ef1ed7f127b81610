"""The federation API's routers."""
