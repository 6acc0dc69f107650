"""Microsoft's Python Graph SDK (msgraph-sdk, PyPI) against Tandem's Graph emulator.

Run by sim/tests/msgraph.rs:
    msgraph_roundtrip.py GRAPH_URL TOKEN_URL CLIENT_ID CLIENT_SECRET MAILBOX SEEDED

GRAPH_URL is the `graph:` line of `tandem sim graph` (http://127.0.0.1:PORT/v1.0), TOKEN_URL
its `graph-token:` line; SEEDED is how many contacts the mailbox already holds. The script
creates a contact, lists the contacts, reads a whole delta round in small pages, changes and
deletes a contact and reads the next delta round from the saved deltaLink. It prints
`msgraph ok` and exits 0 when every check holds, and fails loudly otherwise.

azure-identity's ClientSecretCredential accepts only https authorities, so it cannot point
at a loopback emulator; the credential below does the same OAuth2 client-credentials grant
(POST client_id, client_secret, scope, grant_type to the tenant's token endpoint) and is
handed to the SDK's own AzureIdentityAuthenticationProvider, which kiota allows over http
for localhost and 127.0.0.1.
"""

import asyncio
import sys
import time
from urllib.parse import urlparse

import httpx
from azure.core.credentials import AccessToken
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.contact import Contact
from msgraph.generated.models.email_address import EmailAddress

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


class ClientCredentialsCredential:
    """An async TokenCredential: the client-credentials grant against TOKEN_URL, cached until
    a minute before it expires."""

    def __init__(self, token_url, client_id, client_secret):
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.token = None
        self.requests = 0

    async def get_token(self, *scopes, **_kwargs):
        if self.token is not None and self.token.expires_on - 60 > time.time():
            return self.token
        async with httpx.AsyncClient() as http:
            reply = await http.post(
                self.token_url,
                data={
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                    "scope": " ".join(scopes) or GRAPH_SCOPE,
                    "grant_type": "client_credentials",
                },
            )
        reply.raise_for_status()
        body = reply.json()
        self.requests += 1
        self.token = AccessToken(body["access_token"], int(time.time()) + int(body["expires_in"]))
        return self.token

    async def close(self):
        pass


def check(condition, message):
    if not condition:
        raise SystemExit(f"msgraph check failed: {message}")


async def read_delta_round(builder, first_page_size):
    """Follows nextLinks to the deltaLink; returns (entries, delta_link, pages)."""
    config = RequestConfiguration()
    config.headers.add("Prefer", f"odata.maxpagesize={first_page_size}")
    entries, pages = [], 0
    page = await builder.get(request_configuration=config)
    while True:
        pages += 1
        check(page is not None, "a delta page came back empty")
        check(len(page.value) <= first_page_size, f"page of {len(page.value)} > {first_page_size}")
        entries.extend(page.value)
        if page.odata_delta_link:
            return entries, page.odata_delta_link, pages
        check(page.odata_next_link, "a delta page has neither nextLink nor deltaLink")
        check(pages < 50, "the delta round does not end")
        page = await builder.with_url(page.odata_next_link).get(request_configuration=config)


def removed(entry):
    return "@removed" in (entry.additional_data or {})


async def main(graph_url, token_url, client_id, client_secret, mailbox, seeded):
    credential = ClientCredentialsCredential(token_url, client_id, client_secret)
    host = urlparse(graph_url).hostname
    auth = AzureIdentityAuthenticationProvider(credential, scopes=[GRAPH_SCOPE], allowed_hosts=[host])
    adapter = GraphRequestAdapter(auth)
    adapter.base_url = graph_url
    client = GraphServiceClient(request_adapter=adapter)
    user = client.users.by_user_id(mailbox)

    created = await user.contacts.post(
        Contact(
            given_name="Ada",
            surname="Lovelace",
            company_name="Analytical Engines",
            email_addresses=[EmailAddress(address="ada@example.com", name="Ada Lovelace")],
            business_phones=["+44 20 7946 0000"],
        )
    )
    check(created is not None and created.id, "POST contacts returned no id")
    check(created.change_key, "the created contact has no changeKey")
    check(created.display_name == "Ada Lovelace", f"displayName {created.display_name!r}")

    listed = await user.contacts.get()
    names = {c.given_name for c in listed.value}
    check("Ada" in names, f"the new contact is not listed: {names}")
    check(len(listed.value) == seeded + 1, f"{len(listed.value)} contacts listed, {seeded + 1} expected")

    delta = user.contact_folders.by_contact_folder_id("contacts").contacts.delta
    entries, delta_link, pages = await read_delta_round(delta, 2)
    check(len(entries) == seeded + 1, f"first delta round has {len(entries)} entries")
    check(pages >= 2, f"the first delta round came in {pages} page(s), paging not exercised")
    check(not any(removed(e) for e in entries), "a first delta round reports removals")
    check("deltatoken" in delta_link, f"odd deltaLink {delta_link}")

    fetched = await user.contacts.by_contact_id(created.id).get()
    check(fetched.email_addresses[0].address == "ada@example.com", "GET contact lost the e-mail address")
    await user.contacts.by_contact_id(created.id).patch(Contact(job_title="Analyst"))
    victim = next(e for e in entries if e.id != created.id)
    await user.contacts.by_contact_id(victim.id).delete()

    changes, _, _ = await read_delta_round(delta.with_url(delta_link), 10)
    by_id = {e.id: e for e in changes}
    check(created.id in by_id and by_id[created.id].job_title == "Analyst", "the update is not in the next delta round")
    check(victim.id in by_id and removed(by_id[victim.id]), "the delete is not in the next delta round as @removed")
    check(len(changes) == 2, f"the second delta round has {len(changes)} entries, 2 expected")
    check(credential.requests == 1, f"{credential.requests} token requests; the token should be reused")
    print(f"msgraph ok: {seeded + 1} contacts listed, delta in {pages} pages, update and delete seen")


if __name__ == "__main__":
    if len(sys.argv) != 7:
        raise SystemExit(__doc__)
    asyncio.run(main(*sys.argv[1:6], int(sys.argv[6])))
