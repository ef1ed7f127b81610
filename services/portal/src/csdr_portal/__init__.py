"""CSDR Node portal: the web application over the node's public APIs, and the small server that
delivers it."""
