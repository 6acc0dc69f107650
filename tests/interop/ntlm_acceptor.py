#!/usr/bin/env python3
"""An EWS-shaped HTTP server whose NTLM and Negotiate acceptor is pyspnego's, for checking
Tandem's EWS connector against an acceptor nobody here wrote.

Usage: NTLM_USER_FILE=FILE ntlm_acceptor.py

FILE holds lines DOMAIN:USER:PASSWORD (pyspnego's NTLM acceptor reads it). The server
listens on 127.0.0.1 (a free port), prints "listening: http://127.0.0.1:PORT", and then:

- POST on a connection not signed in: 401 with `WWW-Authenticate: Negotiate` and `NTLM`,
  or the next leg of a handshake (pyspnego `server(protocol=...)`, one context per
  connection); once the context completes, the connection is signed in (as IIS keeps it).
- POST on a signed-in connection: a FindItemResponse with no items.
- GET /stats: {"handshakes": {"ntlm": N, "negotiate": N}, "refused": N, "served": N}.

HTTP/1.1 keep-alive; one handler (and so one state) per connection. Runs until killed.
host/tests/ews_ntlm_interop.rs runs it.
"""
import base64
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import spnego

STATS = {"handshakes": {"ntlm": 0, "negotiate": 0}, "refused": 0, "served": 0}
LOCK = threading.Lock()

FIND_ITEM_REPLY = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
    '<s:Header><h:ServerVersionInfo MajorVersion="15" MinorVersion="1" MajorBuildNumber="2507" MinorBuildNumber="6"'
    ' Version="V2017_07_11" xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types"/></s:Header>'
    '<s:Body><m:FindItemResponse xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"'
    ' xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><m:ResponseMessages>'
    '<m:FindItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
    '<m:RootFolder IndexedPagingOffset="0" TotalItemsInView="0" IncludesLastItemInRange="true"><t:Items/></m:RootFolder>'
    "</m:FindItemResponseMessage></m:ResponseMessages></m:FindItemResponse></s:Body></s:Envelope>"
).encode()


def count(key, sub=None):
    with LOCK:
        if sub is None:
            STATS[key] += 1
        else:
            STATS[key][sub] += 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.context = None
        self.scheme = None
        self.signed_in = False

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def refuse(self):
        self.context = None
        self.reply(401, b"", [("WWW-Authenticate", "Negotiate"), ("WWW-Authenticate", "NTLM")])

    def do_GET(self):
        if self.path == "/stats":
            with LOCK:
                body = json.dumps(STATS).encode()
            self.reply(200, body, [("Content-Type", "application/json")])
        else:
            self.reply(404)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        authorization = self.headers.get("Authorization")
        if authorization is None:
            if self.signed_in:
                count("served")
                return self.reply(200, FIND_ITEM_REPLY, [("Content-Type", "text/xml; charset=utf-8")])
            return self.refuse()
        scheme, _, token = authorization.partition(" ")
        scheme = {"ntlm": "NTLM", "negotiate": "Negotiate"}.get(scheme.lower())
        if scheme is None:
            count("refused")
            return self.refuse()
        token = base64.b64decode(token.strip())
        if self.context is None or scheme != self.scheme or token.startswith(b"NTLMSSP\0\x01"):
            protocol = "ntlm" if scheme == "NTLM" else "negotiate"
            options = spnego.NegotiateOptions.use_ntlm if protocol == "ntlm" else spnego.NegotiateOptions.use_negotiate
            self.context = spnego.server(protocol=protocol, options=options)
            self.scheme = scheme
            self.signed_in = False
        try:
            answer = self.context.step(token)
        except Exception as error:  # pyspnego raises its SpnegoError family on refusal
            print(f"refused: {error}", file=sys.stderr, flush=True)
            count("refused")
            return self.refuse()
        if not self.context.complete:
            value = f"{scheme} {base64.b64encode(answer or b'').decode()}"
            return self.reply(401, b"", [("WWW-Authenticate", value)])
        self.signed_in = True
        count("handshakes", "ntlm" if scheme == "NTLM" else "negotiate")
        count("served")
        headers = [("Content-Type", "text/xml; charset=utf-8")]
        if answer:
            headers.append(("WWW-Authenticate", f"{scheme} {base64.b64encode(answer).decode()}"))
        self.reply(200, FIND_ITEM_REPLY, headers)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"listening: http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
