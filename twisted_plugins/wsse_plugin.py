from twisted.application.service import ServiceMaker

wsse = ServiceMaker(
    "wsse", "wsse.tap", "WebSocket fallback proxy: SSE and POST where WebSocket is blocked", "wsse"
)
