"""Drive the leadscore Salesforce sandbox with simple-salesforce over HTTPS.

The script exchanges the refresh token for an access token, builds a ``Salesforce`` client on
that session, runs ``query`` and ``query_all``, describes one object, updates records through
the sObject Collections API and retrieves them again. It prints one JSON object with what the
client saw on stdout and exits 0, or prints the error on stderr and exits 1.

Environment variables (all required unless a default is given):

- ``LEADSCORE_SF_URL``: login URL of the sandbox, ``https://127.0.0.1:PORT``.
- ``LEADSCORE_SF_CA_CERT``: PEM file with the CA certificate the sandbox's server certificate
  is signed by.
- ``LEADSCORE_SF_CLIENT_ID``, ``LEADSCORE_SF_CLIENT_SECRET``, ``LEADSCORE_SF_REFRESH_TOKEN``:
  the connected-app credentials the sandbox accepts.
- ``LEADSCORE_SF_QUERY``: SOQL query; choose one whose result spans more than one page.
- ``LEADSCORE_SF_DESCRIBE``: object to describe, for example ``Account``.
- ``LEADSCORE_SF_UPDATES``: JSON array of Collections update records, each with
  ``attributes.type`` and ``id``.
- ``LEADSCORE_SF_API_VERSION``: REST API version, default ``59.0``.
"""

import json
import os
import sys

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError

# Seconds before any single HTTP request is abandoned.
TIMEOUT_SECONDS = 30


def require_env(name):
    """Return an environment variable, or exit naming the missing variable."""
    value = os.environ.get(name)
    if not value:
        sys.exit(f"environment variable {name} is missing; set it as tests/clients/README.md describes")
    return value


def refresh_access_token(login_url, ca_cert, client_id, client_secret, refresh_token):
    """Exchange the refresh token for an access token and the instance URL."""
    response = requests.post(
        f"{login_url.rstrip('/')}/services/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
        },
        verify=ca_cert,
        timeout=TIMEOUT_SECONDS,
    )
    if response.status_code != 200:
        # The body is an OAuth error object and contains no secret.
        sys.exit(f"token request failed with HTTP {response.status_code}: {response.text}")
    body = response.json()
    for key in ("access_token", "instance_url"):
        if key not in body:
            sys.exit(f"token response has no {key}; keys present: {sorted(body)}")
    return body["access_token"], body["instance_url"]


def describe_summary(description):
    """Reduce a describe result to the attributes the test checks."""
    fields = {field["name"]: field for field in description["fields"]}
    summary = {"name": description["name"], "field_count": len(fields), "fields": {}}
    for name, field in fields.items():
        summary["fields"][name] = {
            "type": field["type"],
            "updateable": field["updateable"],
            "restrictedPicklist": field.get("restrictedPicklist", False),
            "picklistValues": [
                {"value": value["value"], "active": value["active"]}
                for value in field.get("picklistValues") or []
            ],
        }
    return summary


def run():
    """Run every client call and return the JSON-ready report."""
    login_url = require_env("LEADSCORE_SF_URL")
    ca_cert = require_env("LEADSCORE_SF_CA_CERT")
    soql = require_env("LEADSCORE_SF_QUERY")
    describe_object = require_env("LEADSCORE_SF_DESCRIBE")
    updates = json.loads(require_env("LEADSCORE_SF_UPDATES"))
    version = os.environ.get("LEADSCORE_SF_API_VERSION", "59.0")

    access_token, instance_url = refresh_access_token(
        login_url,
        ca_cert,
        require_env("LEADSCORE_SF_CLIENT_ID"),
        require_env("LEADSCORE_SF_CLIENT_SECRET"),
        require_env("LEADSCORE_SF_REFRESH_TOKEN"),
    )

    # requests lets REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE from the environment override
    # `Session.verify` (requests 2.x), so the sandbox CA must also replace those variables.
    os.environ["REQUESTS_CA_BUNDLE"] = ca_cert
    os.environ.pop("CURL_CA_BUNDLE", None)
    session = requests.Session()
    session.verify = ca_cert
    sf = Salesforce(
        instance_url=instance_url,
        session_id=access_token,
        session=session,
        version=version,
    )

    first_page = sf.query(soql)
    everything = sf.query_all(soql)
    describe = describe_summary(getattr(sf, describe_object).describe())

    save_results = sf.restful(
        "composite/sobjects",
        method="PATCH",
        data=json.dumps({"allOrNone": False, "records": updates}),
    )

    # Retrieve the updated records per object with the fields that were written.
    read_back = {}
    for record in updates:
        object_name = record["attributes"]["type"]
        entry = read_back.setdefault(object_name, {"ids": [], "fields": {"Id"}})
        entry["ids"].append(record["id"])
        entry["fields"].update(key for key in record if key not in ("attributes", "id"))
    retrieved = []
    for object_name, entry in read_back.items():
        rows = sf.restful(
            f"composite/sobjects/{object_name}",
            params={"ids": ",".join(entry["ids"]), "fields": ",".join(sorted(entry["fields"]))},
        )
        retrieved.extend(row for row in rows or [] if row is not None)

    usage = sf.api_usage.get("api-usage")
    return {
        "instance_url": instance_url,
        "first_page": {
            "done": first_page["done"],
            "records": len(first_page["records"]),
            "has_next_records_url": "nextRecordsUrl" in first_page,
        },
        "query_all": {
            "totalSize": everything["totalSize"],
            "done": everything["done"],
            "ids": [record["Id"] for record in everything["records"]],
        },
        "describe": describe,
        "save_results": save_results,
        "retrieved": retrieved,
        "api_usage": {"used": usage.used, "total": usage.total} if usage else None,
    }


def main():
    try:
        report = run()
    except (SalesforceError, requests.RequestException, KeyError, ValueError) as error:
        print(f"simple-salesforce call failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    json.dump(report, sys.stdout, indent=2, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
