"""Drive the leadscore Salesforce sandbox's Bulk API 2.0 with simple-salesforce's ``bulk2``.

The script exchanges the refresh token for an access token, runs one Bulk 2.0 ``query`` and one
``query_all`` job, reading every results page by ``Sforce-Locator``, and one job that selects
a compound address field, which must fail. It prints one JSON object with what the client saw
on stdout and exits 0, or prints the error on stderr and exits 1.

Environment variables (all required unless a default is given):

- ``LEADSCORE_SF_URL``: login URL of the sandbox, ``https://127.0.0.1:PORT``.
- ``LEADSCORE_SF_CA_CERT``: PEM file with the CA certificate of the sandbox's server certificate.
- ``LEADSCORE_SF_CLIENT_ID``, ``LEADSCORE_SF_CLIENT_SECRET``, ``LEADSCORE_SF_REFRESH_TOKEN``:
  the connected-app credentials the sandbox accepts.
- ``LEADSCORE_SF_OBJECT``: object the queries read, for example ``Account``.
- ``LEADSCORE_SF_QUERY``: SOQL query of that object whose first column is ``Id``.
- ``LEADSCORE_SF_COMPOUND_QUERY``: SOQL query that selects a compound field.
- ``LEADSCORE_SF_MAX_RECORDS``: rows per results page (``maxRecords``).
- ``LEADSCORE_SF_API_VERSION``: REST API version, default ``59.0``.
"""

import csv
import io
import json
import os
import sys

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError, SalesforceOperationError

from salesforce_client import refresh_access_token, require_env

# Seconds simple-salesforce sleeps before its first poll of a job; its default is 5.
POLL_WAIT_SECONDS = 0.1


def read_pages(pages):
    """Parse every CSV page of a bulk2 query into a header and the rows of all pages."""
    header = None
    rows = []
    page_sizes = []
    for text in pages:
        reader = csv.reader(io.StringIO(text, newline=""))
        page_header = next(reader)
        if header is None:
            header = page_header
        elif header != page_header:
            raise ValueError(f"page header {page_header} differs from the first {header}")
        page_rows = list(reader)
        page_sizes.append(len(page_rows))
        rows.extend(page_rows)
    return header, rows, page_sizes


def run():
    """Run every Bulk 2.0 call and return the JSON-ready report."""
    login_url = require_env("LEADSCORE_SF_URL")
    ca_cert = require_env("LEADSCORE_SF_CA_CERT")
    object_name = require_env("LEADSCORE_SF_OBJECT")
    soql = require_env("LEADSCORE_SF_QUERY")
    compound_soql = require_env("LEADSCORE_SF_COMPOUND_QUERY")
    max_records = int(require_env("LEADSCORE_SF_MAX_RECORDS"))
    version = os.environ.get("LEADSCORE_SF_API_VERSION", "59.0")

    access_token, instance_url = refresh_access_token(
        login_url,
        ca_cert,
        require_env("LEADSCORE_SF_CLIENT_ID"),
        require_env("LEADSCORE_SF_CLIENT_SECRET"),
        require_env("LEADSCORE_SF_REFRESH_TOKEN"),
    )
    # requests lets REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE override `Session.verify`.
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
    bulk = getattr(sf.bulk2, object_name)

    header, rows, page_sizes = read_pages(
        bulk.query(soql, max_records=max_records, wait=POLL_WAIT_SECONDS)
    )
    _, all_rows, _ = read_pages(
        bulk.query_all(soql, max_records=max_records, wait=POLL_WAIT_SECONDS)
    )

    compound_error = None
    try:
        list(bulk.query(compound_soql, max_records=max_records, wait=POLL_WAIT_SECONDS))
    except SalesforceOperationError as error:
        compound_error = str(error)

    return {
        "header": header,
        "page_sizes": page_sizes,
        "ids": [row[0] for row in rows],
        "rows": rows,
        "query_all_ids": [row[0] for row in all_rows],
        "compound_error": compound_error,
    }


def main():
    try:
        report = run()
    except (
        SalesforceError,
        SalesforceOperationError,
        requests.RequestException,
        KeyError,
        ValueError,
    ) as error:
        print(f"simple-salesforce bulk2 call failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    json.dump(report, sys.stdout, indent=2, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
