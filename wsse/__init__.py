"""
wsse: keeps WebSocket apps working behind gateways that block WebSocket.

Public surface: L{WSSEResource} to mount in a twisted.web Site, L{make_site} to
serve it, and L{Settings} and L{Target} to configure it.  C{twistd wsse} and the
C{wsse} command run it as a service (L{wsse.tap}).
"""

from wsse._resource import WSSEResource
from wsse._settings import HostHeader, Settings
from wsse._site import make_site
from wsse._target import Target

__version__ = "0.1.0"

__all__ = ["HostHeader", "Settings", "Target", "WSSEResource", "make_site", "__version__"]
