"""SimpleSAMLphp 1.19 (Debian's package) as an independent SAML IdP for end-to-end tests.

Bascule is the Service Provider; to prove it interoperates we need a real IdP that nobody here
wrote. ``SimpleSamlIdp`` runs Debian's SimpleSAMLphp under ``php -S`` on a free loopback port with
its own config, metadata, key, sessions and log in a per-test folder, so tests share nothing and
the system install is never touched. Browser-side helpers (``login``, ``start_idp_logout``,
``post_form``) drive its HTML with an ``httpx.Client`` the way a browser would.

Where php or SimpleSAMLphp is missing, ``SimpleSamlIdp.start`` skips the test and says why.

    with running_idp(tmp_path / "idp") as idp:
        idp.add_sp(sp_entity_id, acs_url=..., sls_url=..., cert_pem=sp_cert)
        with httpx.Client() as browser:
            post = login(browser, sp_login_redirect, "alice", "alicepass")
            # post.action is the ACS; post.saml_response / post.relay_state go to the SP.
            leaving = idp.start_idp_logout(browser, return_to=...)  # 302 into the SP's SLS

A refusal shows in ``idp.log_errors()`` (SimpleSAMLphp's error pages come back as HTTP 200)
and in ``idp.log_tail()`` (DEBUG log with every SAML message, plus php -S output).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import lxml.html
import pytest
from lxml import etree

from tests.saml import forge

SSP_ROOT = Path("/usr/share/simplesamlphp")
ROUTER = Path(__file__).resolve().parent / "simplesamlphp" / "router.php"
AUTH_SOURCE = "corp-users"
START_TIMEOUT = 15.0  # seconds for php -S to answer the metadata URL

EMAIL_ADDRESS = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
HTTP_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
HTTP_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
BASIC_NAME_FORMAT = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"

# The corporate directory every IdP starts with; set_user() changes it between logins.
DEFAULT_USERS: dict[str, tuple[str, dict[str, list[str]]]] = {
    "alice": (
        "alicepass",
        {
            "uid": ["alice"],
            "email": ["alice@corp.example"],
            "givenName": ["Alice"],
            "sn": ["Liddell"],
            "groups": ["staff", "admins"],
        },
    ),
    "bob": (
        "bobpass",
        {
            "uid": ["bob"],
            "email": ["bob@corp.example"],
            "givenName": ["Bob"],
            "sn": ["Builder"],
            "groups": ["staff"],
        },
    ),
}


class SimpleSamlError(AssertionError):
    """SimpleSAMLphp did not do what the test expected; the message carries its log tail."""


def simplesamlphp_problem() -> str | None:
    """Why SimpleSAMLphp cannot run here, or None."""
    if shutil.which("php") is None:
        return "php is not installed (apt-get install php-cli php-xml php-mbstring)"
    if not (SSP_ROOT / "www" / "saml2" / "idp" / "SSOService.php").is_file():
        return f"SimpleSAMLphp is not installed at {SSP_ROOT} (apt-get install simplesamlphp)"
    return None


# --- PHP and key material -------------------------------------------------------------------


@dataclass(frozen=True)
class PhpCode:
    """A PHP expression written as is (a constant), not quoted as a string."""

    code: str


def php_literal(value: Any) -> str:
    """Render a Python value as a PHP literal, so config files are built from plain dicts."""
    if isinstance(value, PhpCode):
        return value.code
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str | Path):
        escaped = str(value).replace("\\", "\\\\").replace("'", "\\'")
        return f"'{escaped}'"
    if isinstance(value, Mapping):
        items = ", ".join(f"{php_literal(k)} => {php_literal(v)}" for k, v in value.items())
        return f"[{items}]"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(php_literal(v) for v in value) + "]"
    raise TypeError(f"no PHP literal for {type(value).__name__}")


def php_file(variable: str, value: Mapping[str, Any]) -> str:
    """A PHP file assigning ``value`` to ``$variable`` (config.php, authsources.php, metadata)."""
    header = "<?php\n// Written by tests/saml/simplesamlphp.py for one test run.\n"
    return f"{header}${variable} = {php_literal(value)};\n"


def make_self_signed(common_name: str) -> tuple[str, str]:
    """(private key PEM, certificate PEM), made per run so no key material is committed."""
    keys = forge.make_key_pair(common_name)
    return keys.private_key_pem, keys.cert_pem


def cert_body(cert_pem: str) -> str:
    """The base64 DER of a PEM certificate on one line (SimpleSAMLphp's ``certData``)."""
    return "".join(line for line in cert_pem.strip().splitlines() if "-----" not in line)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- The IdP --------------------------------------------------------------------------------


@dataclass
class _Sp:
    entity_id: str
    acs_url: str
    sls_url: str | None
    cert_pem: str | None
    sign_logout: bool
    validate_authnrequest: bool
    validate_logout: bool
    name_id_format: str

    def metadata(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "entityid": self.entity_id,
            "AssertionConsumerService": [
                {"Binding": HTTP_POST, "Location": self.acs_url, "index": 0},
            ],
            "NameIDFormat": self.name_id_format,
            # The NameID is the user's email (works in 1.19 for any non-transient format).
            "simplesaml.nameidattribute": "email",
            "attributes.NameFormat": BASIC_NAME_FORMAT,
            "signature.algorithm": RSA_SHA256,
            "sign.logout": self.sign_logout,
            "validate.authnrequest": self.validate_authnrequest,
            "validate.logout": self.validate_logout,
        }
        if self.sls_url:
            entry["SingleLogoutService"] = [{"Binding": HTTP_REDIRECT, "Location": self.sls_url}]
        if self.cert_pem:
            entry["certData"] = cert_body(self.cert_pem)
        return entry


@dataclass
class SimpleSamlIdp:
    """One SimpleSAMLphp IdP under ``php -S`` with everything private to ``workdir``."""

    workdir: Path
    users: dict[str, tuple[str, dict[str, list[str]]]] = field(
        default_factory=lambda: {name: (pw, dict(a)) for name, (pw, a) in DEFAULT_USERS.items()}
    )
    port: int = field(default=0, init=False)
    cert_pem: str = field(default="", init=False)
    _sps: dict[str, _Sp] = field(default_factory=dict, init=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    # -- addresses

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash, no /simplesaml)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def metadata_url(self) -> str:
        return f"{self.base_url}/simplesaml/saml2/idp/metadata.php"

    @property
    def entity_id(self) -> str:
        """``__DYNAMIC:1__`` makes the entity id the metadata URL."""
        return self.metadata_url

    @property
    def sso_url(self) -> str:
        return f"{self.base_url}/simplesaml/saml2/idp/SSOService.php"

    @property
    def slo_url(self) -> str:
        return f"{self.base_url}/simplesaml/saml2/idp/SingleLogoutService.php"

    @property
    def config_dir(self) -> Path:
        return self.workdir / "config"

    @property
    def metadata_dir(self) -> Path:
        return self.workdir / "metadata"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "log"

    # -- life cycle

    @classmethod
    def start(cls, workdir: Path, **kwargs: Any) -> SimpleSamlIdp:
        """Write a private configuration under ``workdir`` and serve it; skip if impossible."""
        problem = simplesamlphp_problem()
        if problem:
            pytest.skip(problem)
        idp = cls(workdir=Path(workdir), **kwargs)
        idp._launch()
        return idp

    def _launch(self) -> None:
        for name in ("config", "metadata", "cert", "tmp", "log", "sessions", "data", "docroot"):
            (self.workdir / name).mkdir(parents=True, exist_ok=True)
        (self.workdir / "docroot" / "simplesaml").unlink(missing_ok=True)
        (self.workdir / "docroot" / "simplesaml").symlink_to(SSP_ROOT / "www")
        key_pem, self.cert_pem = make_self_signed("SimpleSAMLphp test IdP")
        key_path = self.workdir / "cert" / "idp.key"
        key_path.write_text(key_pem)
        key_path.chmod(0o600)
        (self.workdir / "cert" / "idp.crt").write_text(self.cert_pem)
        self._write_authsources()
        self._write_sps()
        # The port is picked before php binds it; another process may win that race (php then
        # exits at once), so try a few ports.
        for _attempt in range(3):
            self.port = _free_port()
            self._write_config()
            self._write_idp_hosted()
            problem = self._serve()
            if not problem:
                return
            if self._process is not None:  # running but not serving: a port won't fix that
                break
        self.stop()
        raise SimpleSamlError(f"SimpleSAMLphp did not start: {problem}\n{self.log_tail()}")

    def _serve(self) -> str:
        """Start php -S and wait for the metadata URL; return '' or why it failed.

        ``self._process`` is left None when php exited (worth another port).
        """
        env = {
            **os.environ,
            "SIMPLESAMLPHP_CONFIG_DIR": str(self.config_dir),
            "SSP_WWW_DIR": str(SSP_ROOT / "www"),
        }
        server_log = (self.log_dir / "php-server.log").open("ab")
        self._process = subprocess.Popen(
            [
                "php",
                # OPcache is on under php -S (unlike plain php-cli); it could serve a cached
                # authsources.php or metadata file for up to 2 s after set_user()/add_sp().
                "-d",
                "opcache.enable=0",
                "-d",
                "display_errors=stderr",
                "-S",
                f"127.0.0.1:{self.port}",
                "-t",
                str(self.workdir / "docroot"),
                str(ROUTER),
            ],
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=server_log,
            stderr=subprocess.STDOUT,
        )
        server_log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code, self._process = self._process.returncode, None
                return f"php exited with {code}"
            try:
                answer = httpx.get(self.metadata_url, timeout=2.0)
            except httpx.TransportError:
                time.sleep(0.05)  # polling a port coming up, not waiting on a clock
                continue
            # Its error pages come with HTTP 200 too: only real metadata means it is up.
            if answer.status_code == 200 and "EntityDescriptor" in answer.text:
                return ""
            page = _page_text(answer.text)[:300]
            return f"{self.metadata_url} answered HTTP {answer.status_code}, not metadata: {page}"
        return f"no answer from {self.metadata_url} within {START_TIMEOUT:.0f} s"

    def stop(self) -> None:
        """Stop php -S (idempotent)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def __enter__(self) -> SimpleSamlIdp:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- configuration files

    def _write_config(self) -> None:
        """config.php written from scratch rather than copied from /etc/simplesamlphp.

        Debian's config.php ends by requiring /var/lib/simplesamlphp/secrets.inc.php (root and
        www-data only) and sets syslog logging and secure cookies; every key left out here takes
        SimpleSAMLphp's built-in default.
        """
        loopback = [r"127\.0\.0\.1(:\d+)?", r"localhost(:\d+)?"]
        config = {
            "baseurlpath": f"{self.base_url}/simplesaml/",
            "certdir": f"{self.workdir / 'cert'}/",
            "loggingdir": f"{self.log_dir}/",
            "datadir": f"{self.workdir / 'data'}/",
            "tempdir": str(self.workdir / "tmp"),
            "metadatadir": f"{self.metadata_dir}/",
            "technicalcontact_name": "Test IdP",
            "technicalcontact_email": "idp-admin@corp.example",
            "timezone": "UTC",
            "secretsalt": secrets.token_hex(16),
            "auth.adminpassword": secrets.token_urlsafe(16),
            "admin.protectindexpage": False,
            "admin.protectmetadata": False,
            "admin.checkforupdates": False,
            # ReturnTo and RelayState redirects only to loopback (any port), like a real
            # deployment that lists its SPs' hosts.
            "trusted.url.domains": loopback,
            "trusted.url.regex": True,
            "debug": {"saml": True, "backtraces": True, "validatexml": False},
            "showerrors": True,
            "errorreporting": False,
            "logging.level": PhpCode("SimpleSAML\\Logger::DEBUG"),
            "logging.handler": "file",
            "logging.logfile": "simplesamlphp.log",
            "statistics.out": [],
            "enable.saml20-idp": True,
            "module.enable": {"exampleauth": True, "core": True, "saml": True},
            "session.cookie.secure": False,  # plain http on loopback
            "session.cookie.samesite": None,
            "language.cookie.secure": False,
            "session.phpsession.savepath": str(self.workdir / "sessions"),
            "store.type": "phpsession",
            "metadata.sources": [{"type": "flatfile"}],
            # True drops the "pre-production system" banner from every page.
            "production": True,
        }
        (self.config_dir / "config.php").write_text(php_file("config", config))

    def _write_idp_hosted(self) -> None:
        hosted = {
            "__DYNAMIC:1__": {
                "host": "__DEFAULT__",
                "privatekey": str(self.workdir / "cert" / "idp.key"),
                "certificate": str(self.workdir / "cert" / "idp.crt"),
                "auth": AUTH_SOURCE,
                "signature.algorithm": RSA_SHA256,
                "sign.response": True,
                "saml20.sign.assertion": True,
                "sign.logout": True,
                "NameIDFormat": EMAIL_ADDRESS,
                "simplesaml.nameidattribute": "email",
                "attributes.NameFormat": BASIC_NAME_FORMAT,
                "SingleSignOnServiceBinding": [HTTP_REDIRECT, HTTP_POST],
                "SingleLogoutServiceBinding": [HTTP_REDIRECT, HTTP_POST],
            }
        }
        self._write_metadata("saml20-idp-hosted.php", hosted)

    def _write_metadata(self, name: str, entries: Mapping[str, Mapping[str, Any]]) -> None:
        """Write a flat-file metadata set; SimpleSAMLphp reads it again on every request."""
        lines = ["<?php", "// Written by tests/saml/simplesamlphp.py for one test run."]
        for key, entry in entries.items():
            lines.append(f"$metadata[{php_literal(key)}] = {php_literal(entry)};")
        _atomic_write(self.metadata_dir / name, "\n".join(lines) + "\n")

    def _write_sps(self) -> None:
        self._write_metadata(
            "saml20-sp-remote.php", {e: sp.metadata() for e, sp in self._sps.items()}
        )

    def _write_authsources(self) -> None:
        source: dict[int | str, Any] = {0: "exampleauth:UserPass"}
        for name, (password, attributes) in self.users.items():
            source[f"{name}:{password}"] = attributes
        sources = {AUTH_SOURCE: source}
        _atomic_write(self.config_dir / "authsources.php", php_file("config", sources))

    # -- what tests change

    def add_sp(
        self,
        entity_id: str,
        acs_url: str,
        sls_url: str | None = None,
        cert_pem: str | None = None,
        sign_logout: bool = True,
        validate_authnrequest: bool = False,
        name_id_format: str = EMAIL_ADDRESS,
        validate_logout: bool | None = None,
    ) -> None:
        """Register (or replace) a remote SP; takes effect on the next request.

        ``validate_logout`` defaults to "when a cert is given": then SimpleSAMLphp refuses
        unsigned LogoutRequests/Responses from that SP, as a careful corporate IdP would.
        """
        if validate_authnrequest and not cert_pem:
            raise ValueError("validate_authnrequest needs the SP's signing cert_pem")
        self._sps[entity_id] = _Sp(
            entity_id=entity_id,
            acs_url=acs_url,
            sls_url=sls_url,
            cert_pem=cert_pem,
            sign_logout=sign_logout,
            validate_authnrequest=validate_authnrequest,
            validate_logout=bool(cert_pem) if validate_logout is None else validate_logout,
            name_id_format=name_id_format,
        )
        self._write_sps()

    def add_sp_from_metadata(self, xml: str | bytes, **overrides: Any) -> str:
        """Register an SP from its published SAML metadata; return its entity id.

        Takes the entityID, the HTTP-POST ACS (``isDefault``, else lowest index), the
        HTTP-Redirect SLS, the signing certificate, the first NameIDFormat, and treats
        ``AuthnRequestsSigned="true"`` as "validate AuthnRequests". Keywords override.
        """
        found = parse_sp_metadata(xml)
        found.update(overrides)
        self.add_sp(**found)
        return str(found["entity_id"])

    def remove_sp(self, entity_id: str) -> None:
        self._sps.pop(entity_id, None)
        self._write_sps()

    def set_user(self, username: str, password: str, attributes: dict[str, list[str]]) -> None:
        """Create or change a directory user; the next *fresh* login sees it.

        An existing IdP session keeps the attributes it logged in with: use a new client
        (no SimpleSAMLphp cookie) or ForceAuthn to see changes.
        """
        if ":" in username:
            raise ValueError("exampleauth:UserPass keys are 'user:password'; no ':' in usernames")
        self.users[username] = (password, {k: list(v) for k, v in attributes.items()})
        self._write_authsources()

    def remove_user(self, username: str) -> None:
        self.users.pop(username, None)
        self._write_authsources()

    # -- browser side

    def start_idp_logout(self, client: httpx.Client, return_to: str) -> httpx.Response:
        """Begin IdP-initiated logout; return the first response that leaves the IdP.

        With SPs in the session that is a 302 to an SP's SingleLogoutService carrying a
        LogoutRequest (one SP at a time); with none left it is the 302 to ``return_to``.
        Redirects into SPs are never followed: the test hands them to the SP under test, then
        gives the SP's LogoutResponse redirect to ``follow_in_idp``.
        """
        request = client.build_request("GET", self.slo_url, params={"ReturnTo": return_to})
        return follow_in_idp(client, request)

    # -- reading back

    def metadata_xml(self) -> str:
        """The IdP's metadata as served over HTTP (what an SP would fetch)."""
        response = httpx.get(self.metadata_url, timeout=10.0)
        if response.status_code != 200:
            raise SimpleSamlError(f"metadata: HTTP {response.status_code}\n{self.log_tail()}")
        return response.text

    def log_errors(self) -> list[str]:
        """SimpleSAMLphp's ERROR log lines without backtraces: why it refused something."""
        path = self.log_dir / "simplesamlphp.log"
        if not path.exists():
            return []
        errors = []
        for line in path.read_text(errors="replace").splitlines():
            _, marker, message = line.partition(" ERROR ")
            message = message.split("] ", 1)[-1]
            if marker and not re.match(r"\d+ /|Backtrace:", message):
                errors.append(message)
        return errors

    def log_tail(self, lines: int = 80) -> str:
        """The end of SimpleSAMLphp's DEBUG log and php -S output, for failure messages."""
        parts = []
        for name in ("simplesamlphp.log", "php-server.log"):
            path = self.log_dir / name
            text = path.read_text(errors="replace") if path.exists() else "(none)\n"
            tail = "\n".join(text.splitlines()[-lines:])
            parts.append(f"--- {name} (last {lines} lines)\n{tail}")
        return "\n".join(parts)


@contextmanager
def running_idp(workdir: Path, **kwargs: Any) -> Iterator[SimpleSamlIdp]:
    """``with running_idp(tmp_path) as idp:`` starts an IdP and always stops it."""
    idp = SimpleSamlIdp.start(workdir, **kwargs)
    try:
        yield idp
    finally:
        idp.stop()


def _atomic_write(path: Path, text: str) -> None:
    """Replace a file in one rename, so a request never reads a half-written PHP file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def parse_sp_metadata(xml: str | bytes) -> dict[str, Any]:
    """add_sp() keywords from an SP's ``EntityDescriptor`` (standard SAML 2.0 metadata)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    data = xml.encode() if isinstance(xml, str) else xml
    root = etree.fromstring(data, parser)
    ns = {"md": MD, "ds": DS}
    if root.tag == f"{{{MD}}}EntityDescriptor":
        entity = root
    else:
        entity = root.find(".//md:EntityDescriptor[md:SPSSODescriptor]", ns)
        if entity is None:
            raise ValueError("no EntityDescriptor with an SPSSODescriptor")
    sp = entity.find("md:SPSSODescriptor", ns)
    if sp is None:
        raise ValueError("the EntityDescriptor has no SPSSODescriptor")

    acs = sp.findall(f"md:AssertionConsumerService[@Binding='{HTTP_POST}']", ns)
    if not acs:
        raise ValueError("the SP metadata has no HTTP-POST AssertionConsumerService")
    acs.sort(key=lambda e: (e.get("isDefault") != "true", int(e.get("index", "0"))))
    sls = sp.find(f"md:SingleLogoutService[@Binding='{HTTP_REDIRECT}']", ns)
    cert = None
    for key in sp.findall("md:KeyDescriptor", ns):
        if key.get("use") in (None, "signing"):
            node = key.find(".//ds:X509Certificate", ns)
            if node is not None and node.text:
                cert = "".join(node.text.split())
                break
    formats = [e.text.strip() for e in sp.findall("md:NameIDFormat", ns) if e.text]
    found: dict[str, Any] = {
        "entity_id": entity.get("entityID"),
        "acs_url": acs[0].get("Location"),
        "sls_url": sls.get("Location") if sls is not None else None,
        "cert_pem": _pem(cert) if cert else None,
        "validate_authnrequest": sp.get("AuthnRequestsSigned") == "true" and cert is not None,
    }
    if formats:
        found["name_id_format"] = formats[0]
    return found


def _pem(body: str) -> str:
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


# --- The browser side -----------------------------------------------------------------------


@dataclass(frozen=True)
class SamlPost:
    """An auto-submitting HTML form (HTTP-POST binding): where it posts and what."""

    action: str
    fields: dict[str, str]

    @property
    def saml_response(self) -> str:
        """The base64 ``SAMLResponse`` (raises KeyError when the form carries a request)."""
        return self.fields["SAMLResponse"]

    @property
    def saml_request(self) -> str:
        return self.fields["SAMLRequest"]

    @property
    def relay_state(self) -> str | None:
        return self.fields.get("RelayState")


def post_form(html: str, page_url: str | httpx.URL) -> SamlPost:
    """Parse the first form on a page: absolute action URL and every named input's value."""
    document = lxml.html.fromstring(html)
    forms = document.forms
    if not forms:
        raise ValueError("the page has no form")
    form = forms[0]
    action = str(httpx.URL(str(page_url)).join(form.get("action") or ""))
    fields = {
        str(i.get("name")): i.get("value") or ""
        for i in form.iter("input")
        if i.get("name") and i.get("type") != "submit"
    }
    return SamlPost(action=action, fields=fields)


def submit(client: httpx.Client, form: SamlPost) -> httpx.Response:
    """Post a parsed form as the browser's JavaScript would (no redirects followed)."""
    return client.post(form.action, data=form.fields)


def login(
    client: httpx.Client, sso_redirect_url: str | SamlPost, username: str, password: str
) -> SamlPost:
    """Follow an SP's redirect to the IdP, sign in on its form, return the post to the ACS.

    ``sso_redirect_url`` is the SP's HTTP-Redirect URL, or the SP's parsed auto-submit form
    for the HTTP-POST binding. When the client already has an IdP session the IdP answers
    with the post at once and the credentials are not used (that is single sign-on).
    """
    if isinstance(sso_redirect_url, SamlPost):
        page = client.post(sso_redirect_url.action, data=sso_redirect_url.fields)
        if page.is_redirect:
            page = client.get(redirect_target(page), follow_redirects=True)
    else:
        page = client.get(sso_redirect_url, follow_redirects=True)
    _expect_ok(page, "the SSO request")
    if _has_saml_field(page.text):
        return post_form(page.text, page.url)
    login_form = _login_form(page.text, page.url)
    fields = {**login_form.fields, "username": username, "password": password}
    answer = client.post(login_form.action, data=fields, follow_redirects=True)
    _expect_ok(answer, "the login form post")
    if not _has_saml_field(answer.text):
        reason = "wrong username or password" if 'name="password"' in answer.text else "no form"
        raise SimpleSamlError(
            f"no SAMLResponse after logging in as {username!r} ({reason}); page:\n"
            f"{_page_text(answer.text)}"
        )
    return post_form(answer.text, answer.url)


def follow_in_idp(client: httpx.Client, request: httpx.Request | str) -> httpx.Response:
    """Send a request and follow redirects while they stay on the same origin (the IdP).

    Use it to hand the SP's LogoutResponse redirect back to the IdP: the answer is the IdP's
    next hop (another SP's LogoutRequest, or the redirect to ReturnTo).
    """
    if isinstance(request, str):
        request = client.build_request("GET", request)
    origin = (request.url.scheme, request.url.host, request.url.port)
    response = client.send(request)
    for _hop in range(20):
        if not response.is_redirect:
            return response
        target = response.url.join(response.headers["location"])
        if (target.scheme, target.host, target.port) != origin:
            return response
        response = client.get(target)
    raise SimpleSamlError("more than 20 redirects inside the IdP")


def redirect_target(response: httpx.Response) -> httpx.URL:
    """The absolute URL a redirect points to."""
    if not response.is_redirect:
        raise SimpleSamlError(f"expected a redirect, got HTTP {response.status_code}")
    return response.url.join(response.headers["location"])


def _has_saml_field(html: str) -> bool:
    return re.search(r'name="SAML(Response|Request)"', html) is not None


def _login_form(html: str, page_url: httpx.URL) -> SamlPost:
    document = lxml.html.fromstring(html)
    for form in document.forms:
        if form.xpath(".//input[@name='password']"):
            action = str(page_url.join(form.get("action") or ""))
            fields = {
                str(i.get("name")): i.get("value") or ""
                for i in form.iter("input")
                if i.get("name") and i.get("type") not in ("checkbox", "submit")
            }
            if "AuthState" not in fields:
                raise SimpleSamlError("the login form has no AuthState")
            return SamlPost(action=action, fields=fields)
    raise SimpleSamlError(
        f"expected SimpleSAMLphp's login form (see its log_errors()); page:\n{_page_text(html)}"
    )


def _expect_ok(response: httpx.Response, what: str) -> None:
    if response.status_code != 200:
        raise SimpleSamlError(
            f"{what}: HTTP {response.status_code} from {response.url}\n{_page_text(response.text)}"
        )


def _page_text(html: str) -> str:
    """The visible text of an HTML page, short, for assertion messages."""
    try:
        text = lxml.html.fromstring(html).text_content()
    except (etree.ParserError, ValueError):
        text = html
    return re.sub(r"\s+", " ", text).strip()[:1500]
