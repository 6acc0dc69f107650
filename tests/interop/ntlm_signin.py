#!/usr/bin/env python3
"""Windows sign-in to Tandem's EWS emulator with clients nobody here wrote.

Usage: ntlm_signin.py ENDPOINT USER PASSWORD MAILBOX

The emulator must offer NTLM and Negotiate. Checks, in order:

1. requests-ntlm (HttpNtlmAuth, pyspnego's NTLM underneath) signs in and gets a
   FindItemResponse; with a wrong password it ends with 401.
2. pyspnego's own Negotiate (SPNEGO around NTLM, with the MIC) signs in over one
   http.client connection, checks the emulator's last token (accept-completed and its
   mechListMIC), then sends a second request on the same connection with no Authorization
   header and is served: the sign-in holds for the connection.
3. The same with a wrong password ends with 401.

Prints "ntlm: ok", "negotiate: ok"; exits non-zero with a message on the first failure.
sim/tests/ntlm_interop.rs runs it.
"""
import base64
import http.client
import sys
from urllib.parse import urlparse

import requests
import spnego
from requests_ntlm import HttpNtlmAuth


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def find_item(mailbox):
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"'
        ' xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">'
        '<soap:Header><t:RequestServerVersion Version="Exchange2013_SP1"/>'
        "<t:ExchangeImpersonation><t:ConnectingSID>"
        f"<t:PrimarySmtpAddress>{mailbox}</t:PrimarySmtpAddress>"
        "</t:ConnectingSID></t:ExchangeImpersonation></soap:Header>"
        '<soap:Body><m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>'
        '</m:ItemShape><m:IndexedPageItemView MaxEntriesReturned="10" Offset="0" BasePoint="Beginning"/>'
        '<m:ParentFolderIds><t:DistinguishedFolderId Id="contacts"/></m:ParentFolderIds>'
        "</m:FindItem></soap:Body></soap:Envelope>"
    ).encode()


HEADERS = {"Content-Type": "text/xml; charset=utf-8"}


def requests_ntlm_round(endpoint, user, password, mailbox):
    session = requests.Session()
    reply = session.post(endpoint, data=find_item(mailbox), headers=HEADERS, auth=HttpNtlmAuth(user, password))
    check(reply.status_code == 200, f"requests-ntlm: HTTP {reply.status_code}: {reply.text[:300]}")
    check("FindItemResponse" in reply.text, f"requests-ntlm: not a FindItem reply: {reply.text[:300]}")
    offered = [reply.history[0].headers.get("WWW-Authenticate", "")]
    check("NTLM" in offered[0] and "Negotiate" in offered[0], f"the first 401 offers {offered}")

    wrong = requests.post(endpoint, data=find_item(mailbox), headers=HEADERS, auth=HttpNtlmAuth(user, password + "x"))
    check(wrong.status_code == 401, f"requests-ntlm with a wrong password: HTTP {wrong.status_code}")
    print("ntlm: ok")


def negotiate_token(response):
    for value in response.msg.get_all("WWW-Authenticate") or []:
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "negotiate" and token.strip():
            return base64.b64decode(token.strip())
    return None


def negotiate_round(endpoint, user, password, mailbox):
    url = urlparse(endpoint)
    context = spnego.client(
        user,
        password,
        hostname=url.hostname,
        service="HTTP",
        protocol="negotiate",
        options=spnego.NegotiateOptions.use_negotiate,
    )
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)

    def post(body, token=None):
        headers = dict(HEADERS)
        if token is not None:
            headers["Authorization"] = "Negotiate " + base64.b64encode(token).decode()
        connection.request("POST", url.path, body=body, headers=headers)
        response = connection.getresponse()
        return response, response.read()

    response, _ = post(b"", context.step())
    check(response.status == 401, f"negotiate: the first leg got HTTP {response.status}")
    challenge = negotiate_token(response)
    check(challenge is not None, "negotiate: no challenge in WWW-Authenticate")
    response, body = post(find_item(mailbox), context.step(challenge))
    if password_is_wrong(response):
        return response.status
    check(response.status == 200, f"negotiate: HTTP {response.status}: {body[:300]!r}")
    check(b"FindItemResponse" in body, f"negotiate: not a FindItem reply: {body[:300]!r}")
    last = negotiate_token(response)
    check(last is not None, "negotiate: the emulator sent no last token (accept-completed, mechListMIC)")
    # pyspnego checks the acceptor's mechListMIC here and raises when it is wrong.
    context.step(last)
    check(context.complete, "negotiate: the context did not complete with the emulator's last token")
    response, body = post(find_item(mailbox))
    check(response.status == 200, f"negotiate: the signed-in connection was not kept: HTTP {response.status}")
    connection.close()
    print("negotiate: ok")
    return 200


def password_is_wrong(response):
    return response.status == 401


def main():
    endpoint, user, password, mailbox = sys.argv[1:5]
    requests_ntlm_round(endpoint, user, password, mailbox)
    status = negotiate_round(endpoint, user, password, mailbox)
    check(status == 200, "negotiate with the right password was refused")
    status = negotiate_round(endpoint, user, password + "x", mailbox)
    check(status == 401, f"negotiate with a wrong password: HTTP {status}")
    print("negotiate wrong password: ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        sys.exit(1)
