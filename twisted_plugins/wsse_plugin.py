from twisted.application.service import ServiceMaker

wsse = ServiceMaker("wsse", "wsse.tap", "A reverse proxy for WebSocket apps behind gateways", "wsse")
