"""azure-identity's CertificateCredential (PyPI; MSAL signs the client assertion) against
Tandem's Graph emulator served over HTTPS.

Run by sim/tests/azure_identity.rs:
    azure_identity_certificate.py AUTHORITY TENANT CLIENT_ID CERTIFICATE_PEM GRAPH_URL MAILBOX

AUTHORITY is the emulator's host:port (azure-identity takes https authorities only; the
emulator's CA comes through REQUESTS_CA_BUNDLE), CERTIFICATE_PEM the app's certificate and
private key in one file, as azure-identity reads them. With instance discovery off, MSAL reads
the tenant's openid-configuration from the emulator, signs a client assertion (PS256,
x5t#S256) for its token endpoint and asks for a Graph token; the token then lists the
mailbox's contacts. Prints `azure-identity ok` when every check holds.
"""

import json
import os
import sys
import urllib.request
import ssl

from azure.identity import CertificateCredential

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def check(condition, message):
    if not condition:
        raise SystemExit(f"azure-identity check failed: {message}")


def main():
    authority, tenant, client_id, certificate, graph_url, mailbox = sys.argv[1:7]
    credential = CertificateCredential(
        tenant,
        client_id,
        certificate_path=certificate,
        authority=authority,
        disable_instance_discovery=True,
    )
    token = credential.get_token(GRAPH_SCOPE)
    check(token.token and token.expires_on > 0, "no token")
    # A second call is answered from MSAL's cache: one assertion, one token request.
    check(credential.get_token(GRAPH_SCOPE).token == token.token, "the token is not cached")

    context = ssl.create_default_context(cafile=os.environ["REQUESTS_CA_BUNDLE"])
    request = urllib.request.Request(
        f"{graph_url}/users/{mailbox}/contacts",
        headers={"Authorization": f"Bearer {token.token}"},
    )
    with urllib.request.urlopen(request, context=context) as reply:
        body = json.load(reply)
    check(isinstance(body.get("value"), list), f"no contact list: {body}")
    check(len(body["value"]) == 1, f"one contact expected: {body}")
    print("azure-identity ok")


main()
