"""The simulated CA's accounts as every test signs in to them: one ``Credentials`` for the suite.

The secrets are the suite's own (tests/helpers.py), which the autouse fixtures look for in
every log record and captured output. The other values are not the simulator's defaults,
so a test passes only when the simulator checks the account it was given.
"""

from __future__ import annotations

from typing import Final

from certpoll.testing import Credentials
from tests.helpers import (
    DIGICERT_API_KEY,
    GLOBALSIGN_API_KEY,
    GLOBALSIGN_API_SECRET,
    GLOBALSIGN_TOKEN,
    SECTIGO_LOGIN,
    SECTIGO_PASSWORD,
)

__all__ = ["CREDENTIALS", "ENTRUST_CA_PATH"]

CREDENTIALS: Final = Credentials(
    digicert_api_key=DIGICERT_API_KEY,
    digicert_org_id=42,
    sectigo_customer_uri="acme-corp",
    sectigo_login=SECTIGO_LOGIN,
    sectigo_password=SECTIGO_PASSWORD,
    sectigo_org_id=7,
    sectigo_cert_type=99,
    entrust_ca_id="CA1",
    globalsign_api_key=GLOBALSIGN_API_KEY,
    globalsign_api_secret=GLOBALSIGN_API_SECRET,
    globalsign_token_prefix=GLOBALSIGN_TOKEN,
)

#: The Entrust CA's path below the CA Gateway's API root.
ENTRUST_CA_PATH: Final = f"/v1/certificate-authorities/{CREDENTIALS.entrust_ca_id}"
