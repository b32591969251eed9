"""What one gateway process runs with: the shared settings, its policy and its secrets."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from gateway import policy as policy_module
from gateway.policy import Policy
from idp.common import gateway_key
from idp.common.sealing import load_keyring
from idp.common.session_record import COOKIE_NAME, DEV_COOKIE_NAME, Limits
from idp.common.signing import Signer
from idp.config import Settings

CLIENT_ID = "bascule-gateway"
SECRET_FILE = "gateway-client.secret"  # noqa: S105 - a file name
DEMO_POLICY = Path(__file__).resolve().parent / "demo_policy.toml"
# The IdP's session cookie (idp/runtime.py), both spellings. Cookies ignore ports: where the
# IdP shares the gateway's host name the browser sends it here too, and the upstream must
# never see it (it is the user's whole IdP session).
IDP_SESSION_COOKIES = frozenset({COOKIE_NAME, DEV_COOKIE_NAME})


@dataclass(frozen=True)
class GatewayConfig:
    """Derived values are computed once (cached): several are read on every request."""

    settings: Settings
    policy: Policy
    client_secret: str
    signer: Signer
    upstream_timeout: float

    @cached_property
    def issuer(self) -> str:
        return self.settings.issuer.rstrip("/")

    @cached_property
    def public_url(self) -> str:
        return self.settings.gateway_url.rstrip("/")

    @cached_property
    def cookie_name(self) -> str:
        # Cookies ignore ports: the IdP's cookie on the same host must not be ours.
        return "bascule_gateway" if self.settings.is_dev else "__Host-bascule_gateway"

    @cached_property
    def private_cookies(self) -> frozenset[str]:
        """Cookies that stop at the gateway: its own session's and the IdP's."""
        return IDP_SESSION_COOKIES | {self.cookie_name}

    @cached_property
    def secure_cookies(self) -> bool:
        return not self.settings.is_dev

    @cached_property
    def session_limits(self) -> Limits:
        return Limits(
            self.settings.session_idle_minutes * 60, self.settings.session_max_hours * 3600
        )


def load(settings: Settings) -> GatewayConfig:
    """Everything the gateway needs at start; a clear error names what is missing."""
    keyring = load_keyring(settings.keys_dir, settings.data_key)
    secret_path = settings.keys_dir / SECRET_FILE
    if not secret_path.is_file():
        raise RuntimeError(f"no gateway client secret at {secret_path}; run `bascule init`")
    secret = keyring.unseal(secret_path.read_text().strip(), SECRET_FILE).decode()
    policy = policy_module.load(settings.gateway_policy or DEMO_POLICY)
    if settings.upstream_url:
        upstream = replace(policy.upstream, url=settings.upstream_url)
        policy = replace(policy, upstream=upstream)
    return GatewayConfig(
        settings=settings,
        policy=policy,
        client_secret=secret,
        signer=gateway_key.signer(settings.keys_dir, keyring),
        upstream_timeout=settings.gateway_upstream_timeout,
    )
