"""
The wire contract between the injected shim and the server, in one place.

The shim (C{wsse/shim/wsse-shim.js}) and the server must agree on every name here;
the README's protocol section documents the same names.  The server hands these
values to the shim through the injected script element's attributes, so the
JavaScript never hard-codes a path.
"""

# Every endpoint wsse itself answers lives under this path segment, at the point
# where wsse is mounted (the site root, or a child such as /app/).
ENDPOINT_SEGMENT = b"__wsse"

# Attribute on the injected <script> carrying the per-page configuration, as
# URL-encoded key=value pairs (see _shim.script_tag).
CONFIG_ATTRIBUTE = "data-wsse"

# Keys of that configuration:
#   path  - the request path wsse saw for this page, so the shim can learn a
#           prefix that a gateway in front stripped (location.pathname minus it);
#   base  - wsse's own endpoint directory, relative to the page's directory.
CONFIG_PATH = "path"
CONFIG_BASE = "base"

# The global object the shim publishes for pages and tests that want to know
# how a socket is carried.
SHIM_GLOBAL = "__wsse"
