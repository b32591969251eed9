"""Run the messaging app alone for development: ``python -m examples.messaging``.

Werkzeug's development server, on loopback by default: the app must only be reachable through
the gateway, which is what makes its assertion the only way in. Use gunicorn in production.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from examples.messaging.app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.messaging", description=__doc__)
    parser.add_argument(
        "--issuer",
        default=os.environ.get("BASCULE_ISSUER", "http://localhost:8000"),
        help="the IdP's base URL; its keys are at <issuer>/oauth2/jwks (env BASCULE_ISSUER)",
    )
    parser.add_argument(
        "--gateway-url",
        default=os.environ.get("BASCULE_GATEWAY_URL", "http://localhost:8080"),
        help="the gateway's public URL, the assertion's iss (env BASCULE_GATEWAY_URL)",
    )
    parser.add_argument("--audience", default="messaging", help="the assertion's aud")
    parser.add_argument("--data", type=Path, help="SQLite file (default: instance/messaging.db)")
    parser.add_argument("--bind", default="127.0.0.1:8090", help="host:port to listen on")
    args = parser.parse_args(argv)
    host, _, port = args.bind.rpartition(":")
    app = create_app(args.issuer, args.gateway_url, args.audience, args.data)
    app.run(host=host.strip("[]") or "127.0.0.1", port=int(port), debug=False)


if __name__ == "__main__":
    main()
