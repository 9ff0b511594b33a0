"""Drive the leadscore HubSpot sandbox with hubspot-api-client.

The script lists contacts page by page and with the client's ``get_all`` helper, runs a CRM
search through every result page, batch-updates contacts and batch-reads them again. It prints
one JSON object with what the client saw on stdout and exits 0, or prints the error on stderr
and exits 1.

Environment variables (all required unless a default is given):

- ``LEADSCORE_HS_URL``: base URL of the sandbox, ``https://127.0.0.1:PORT`` or ``http://...``.
- ``LEADSCORE_HS_TOKEN``: a static access token (private-app token) the sandbox accepts.
- ``LEADSCORE_HS_CA_CERT``: PEM file with the CA certificate of an HTTPS sandbox; leave it
  unset for plain HTTP.
- ``LEADSCORE_HS_PAGE_LIMIT``: contacts per list page, default 10 (HubSpot allows 1 to 100).
- ``LEADSCORE_HS_PROPERTIES``: comma-separated properties to read, default
  ``email,firstname,lastname,lastmodifieddate``.
- ``LEADSCORE_HS_SEARCH``: JSON search request in the REST API's form (``filterGroups`` with
  ``propertyName``/``operator``/``value`` filters, ``sorts``, ``properties``, ``limit``).
- ``LEADSCORE_HS_UPDATES``: JSON array of batch-update inputs, ``{"id", "properties"}``; at
  most 100.
"""

import json
import os
import sys

import hubspot
import urllib3
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectBatchInput,
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInput,
    SimplePublicObjectId,
)

DEFAULT_PROPERTIES = "email,firstname,lastname,lastmodifieddate"


def require_env(name):
    """Return an environment variable, or exit naming the missing variable."""
    value = os.environ.get(name)
    if not value:
        sys.exit(f"environment variable {name} is missing; set it as tests/clients/README.md describes")
    return value


def search_request(body, after):
    """Build the client's search model from a REST-form search body."""
    groups = [
        FilterGroup(
            filters=[
                Filter(
                    property_name=item["propertyName"],
                    operator=item["operator"],
                    value=item.get("value"),
                    values=item.get("values"),
                    high_value=item.get("highValue"),
                )
                for item in group.get("filters", [])
            ]
        )
        for group in body.get("filterGroups", [])
    ]
    return PublicObjectSearchRequest(
        filter_groups=groups,
        sorts=body.get("sorts"),
        properties=body.get("properties"),
        limit=body.get("limit"),
        after=after,
    )


def object_summary(record):
    """Reduce a client model object to its id, properties and timestamps."""
    return {
        "id": record.id,
        "properties": record.properties,
        "updatedAt": record.updated_at.isoformat() if record.updated_at else None,
        "archived": record.archived,
    }


def batch_errors(response):
    """List the per-input errors of a 207 batch response as category and ids."""
    # Only the WithErrors response models (HTTP 207) have `errors`.
    errors = getattr(response, "errors", None) or []
    return [
        {"category": error.category, "ids": (error.context or {}).get("ids", [])}
        for error in errors
    ]


def run():
    """Run every client call and return the JSON-ready report."""
    url = require_env("LEADSCORE_HS_URL")
    token = require_env("LEADSCORE_HS_TOKEN")
    ca_cert = os.environ.get("LEADSCORE_HS_CA_CERT") or None
    page_limit = int(os.environ.get("LEADSCORE_HS_PAGE_LIMIT", "10"))
    properties = os.environ.get("LEADSCORE_HS_PROPERTIES", DEFAULT_PROPERTIES).split(",")
    search_body = json.loads(require_env("LEADSCORE_HS_SEARCH"))
    updates = json.loads(require_env("LEADSCORE_HS_UPDATES"))

    # The client copies every keyword onto each generated Configuration, so `host` replaces
    # https://api.hubapi.com and `ssl_ca_cert` becomes urllib3's CA bundle.
    client = hubspot.Client.create(access_token=token, host=url, ssl_ca_cert=ca_cert)
    contacts = client.crm.contacts

    list_ids = []
    list_pages = 0
    after = None
    while True:
        # HubSpot's own examples pass archived=False; the client sends it as "False".
        page = contacts.basic_api.get_page(
            limit=page_limit, after=after, properties=properties, archived=False
        )
        list_pages += 1
        list_ids.extend(record.id for record in page.results)
        if page.paging is None or page.paging.next is None:
            break
        after = page.paging.next.after

    all_ids = [record.id for record in contacts.get_all(properties=properties)]

    search_ids = []
    search_pages = 0
    search_total = None
    after = None
    while True:
        page = contacts.search_api.do_search(
            public_object_search_request=search_request(search_body, after)
        )
        search_pages += 1
        search_total = page.total
        search_ids.extend(record.id for record in page.results)
        if page.paging is None or page.paging.next is None:
            break
        after = page.paging.next.after

    update_response = contacts.batch_api.update(
        batch_input_simple_public_object_batch_input=BatchInputSimplePublicObjectBatchInput(
            inputs=[
                SimplePublicObjectBatchInput(id=item["id"], properties=item["properties"])
                for item in updates
            ]
        )
    )
    written = sorted({name for item in updates for name in item["properties"]})
    read_response = contacts.batch_api.read(
        batch_read_input_simple_public_object_id=BatchReadInputSimplePublicObjectId(
            properties=written,
            properties_with_history=[],
            inputs=[SimplePublicObjectId(id=item["id"]) for item in updates],
        )
    )

    return {
        "list": {"pages": list_pages, "ids": list_ids},
        "get_all": {"ids": all_ids},
        "search": {"pages": search_pages, "total": search_total, "ids": search_ids},
        "batch_update": {
            "status": update_response.status,
            "results": [object_summary(record) for record in update_response.results],
            "errors": batch_errors(update_response),
        },
        "batch_read": {
            "status": read_response.status,
            "results": [object_summary(record) for record in read_response.results],
            "errors": batch_errors(read_response),
        },
    }


def main():
    try:
        report = run()
    except (ApiException, urllib3.exceptions.HTTPError, KeyError, ValueError) as error:
        print(f"hubspot-api-client call failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    json.dump(report, sys.stdout, indent=2, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
