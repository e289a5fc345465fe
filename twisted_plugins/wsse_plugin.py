from twisted.application.service import ServiceMaker

wsse = ServiceMaker("wsse", "wsse.tap", "WebSocket apps behind gateways that block WebSocket", "wsse")
