"""GET cacerts and csrattrs (RFC 7030 §4.1, §4.5), default and named labels."""

from __future__ import annotations

import base64
from typing import Any

from pyasn1.codec.der import decoder
from pyasn1.type import namedtype, tag, univ
from pyasn1_modules import rfc5280, rfc5652, rfc7030

from protocols.est import messages
from server.ca.est import api as est_api
from tests.protocols.est.conftest import OP, PREFIX, EstEnv, certs_from_body


async def test_cacerts_default_label_returns_chain_to_root(est_env: EstEnv) -> None:
    resp = await est_env.client.get(f"{PREFIX}/cacerts")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/pkcs7-mime; smime-type=certs-only"
    certs = certs_from_body(await resp.read())
    assert {c.subject for c in certs} == {c.subject for c in est_env.chain}
    assert len(certs) == 2


async def test_cacerts_named_label_uses_its_ca(est_env: EstEnv) -> None:
    await est_env.engine.create_subordinate("factory", parent="root", actor=OP)
    await est_env.service.add_label(est_api.EstLabel(name="factory", ca="factory"), actor=OP)
    resp = await est_env.client.get(f"{PREFIX}/factory/cacerts")
    assert resp.status == 200
    names = {c.subject.rfc4514_string() for c in certs_from_body(await resp.read())}
    assert names == {"CN=factory,O=privca", "CN=root,O=privca"}


async def test_cacerts_unknown_label_is_404(est_env: EstEnv) -> None:
    resp = await est_env.client.get(f"{PREFIX}/nosuchlabel/cacerts")
    assert resp.status == 404
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert "nosuchlabel" in await resp.text()


async def test_csrattrs_derived_from_profile(est_env: EstEnv) -> None:
    resp = await est_env.client.get(f"{PREFIX}/csrattrs")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/csrattrs"
    der = base64.b64decode(b"".join((await resp.read()).split()), validate=True)
    attrs, rest = decoder.decode(der, asn1Spec=rfc7030.CsrAttrs())
    assert rest == b""
    oids = []
    for item in attrs:
        name = item.getName()
        if name == "oid":
            oids.append(str(item["oid"]))
        else:
            oids.append(str(item["attribute"]["attrType"]))
    assert oids == ["1.2.840.10045.2.1", "1.2.840.10045.4.3.2", "2.5.4.5", _TEMPLATE_OID]
    # The RFC 9908 template says the same: subject CN and serialNumber for the device to
    # fill in, a P-256 key, no extensions asked for (the device profile needs no SAN).
    template = _template(attrs)
    assert int(template["version"]) == 0
    subject = [
        [(str(a["type"]), a["value"].hasValue()) for a in rdn] for rdn in template["subject"]
    ]
    assert subject == [[("2.5.4.3", False)], [("2.5.4.5", False)]]
    spki = template["subjectPKInfo"]
    assert str(spki["algorithm"]["algorithm"]) == "1.2.840.10045.2.1"
    curve, _ = decoder.decode(bytes(spki["algorithm"]["parameters"]))
    assert str(curve) == "1.2.840.10045.3.1.7"
    assert not spki["subjectPublicKey"].hasValue()
    assert len(template["attributes"]) == 0


async def test_csrattrs_template_asks_tls_server_labels_for_names(est_env: EstEnv) -> None:
    await est_env.service.add_label(est_api.EstLabel(name="web", profile="tls-server"), actor=OP)
    resp = await est_env.client.get(f"{PREFIX}/web/csrattrs")
    der = base64.b64decode(b"".join((await resp.read()).split()))
    template = _template(decoder.decode(der, asn1Spec=rfc7030.CsrAttrs())[0])
    assert not template["subject"].hasValue()  # the profile builds the subject from the SANs
    (attribute,) = template["attributes"]
    assert str(attribute["attrType"]) == "1.2.840.113549.1.9.16.2.62"  # extensionReqTemplate
    (value,) = attribute["attrValues"]
    (ext,), rest = decoder.decode(bytes(value), asn1Spec=_EXTENSION_TEMPLATES)
    assert rest == b""
    assert str(ext["extnID"]) == "2.5.29.17"
    assert not ext["extnValue"].hasValue()


def test_csrattrs_template_rsa_key_has_null_parameters() -> None:
    template = est_api.CsrTemplate(key_algorithm="1.2.840.113549.1.1.1")
    der = messages.csrattrs_der((), template)
    decoded = _template(decoder.decode(der, asn1Spec=rfc7030.CsrAttrs())[0])
    algorithm = decoded["subjectPKInfo"]["algorithm"]
    assert str(algorithm["algorithm"]) == "1.2.840.113549.1.1.1"
    assert bytes(algorithm["parameters"]) == b"\x05\x00"  # NULL (RFC 3279 §2.3.1)
    assert not decoded["subject"].hasValue()


# RFC 9908 §3.4 structures, written here from the RFC as an independent decoder.
_TEMPLATE_OID = "1.2.840.113549.1.9.16.2.61"


def _implicit(n: int) -> Any:
    return tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, n)


_SINGLE_ATTRIBUTE_TEMPLATE = univ.Sequence(
    componentType=namedtype.NamedTypes(
        namedtype.NamedType("type", univ.ObjectIdentifier()),
        namedtype.OptionalNamedType("value", univ.Any()),
    )
)
_NAME_TEMPLATE = univ.SequenceOf(componentType=univ.SetOf(componentType=_SINGLE_ATTRIBUTE_TEMPLATE))
_SPKI_TEMPLATE = univ.Sequence(
    componentType=namedtype.NamedTypes(
        namedtype.NamedType("algorithm", rfc5280.AlgorithmIdentifier()),
        namedtype.OptionalNamedType("subjectPublicKey", univ.BitString()),
    )
)
_CRI_TEMPLATE = univ.Sequence(
    componentType=namedtype.NamedTypes(
        namedtype.NamedType("version", univ.Integer()),
        namedtype.OptionalNamedType("subject", _NAME_TEMPLATE),
        namedtype.OptionalNamedType(
            "subjectPKInfo", _SPKI_TEMPLATE.subtype(implicitTag=_implicit(0))
        ),
        namedtype.NamedType(
            "attributes",
            univ.SetOf(componentType=rfc5652.Attribute()).subtype(implicitTag=_implicit(1)),
        ),
    )
)
_EXTENSION_TEMPLATES = univ.SequenceOf(
    componentType=univ.Sequence(
        componentType=namedtype.NamedTypes(
            namedtype.NamedType("extnID", univ.ObjectIdentifier()),
            namedtype.DefaultedNamedType("critical", univ.Boolean(False)),
            namedtype.OptionalNamedType("extnValue", univ.OctetString()),
        )
    )
)


def _template(attrs: Any) -> Any:
    """Return the one decoded CertificationRequestInfoTemplate of a CsrAttrs."""
    found = [
        i["attribute"]
        for i in attrs
        if i.getName() == "attribute" and str(i["attribute"]["attrType"]) == _TEMPLATE_OID
    ]
    assert len(found) == 1
    (value,) = found[0]["attrValues"]
    template, rest = decoder.decode(bytes(value), asn1Spec=_CRI_TEMPLATE)
    assert rest == b""
    return template


async def test_csrattrs_configured_and_empty(est_env: EstEnv) -> None:
    attrs = (est_api.CsrAttr("1.2.840.113549.1.9.7"),)
    await est_env.service.add_label(est_api.EstLabel(name="challenge", csrattrs=attrs), actor=OP)
    await est_env.service.add_label(est_api.EstLabel(name="none", csrattrs=()), actor=OP)
    resp = await est_env.client.get(f"{PREFIX}/challenge/csrattrs")
    der = base64.b64decode(b"".join((await resp.read()).split()))
    decoded, _ = decoder.decode(der, asn1Spec=rfc7030.CsrAttrs())
    assert [str(i["oid"]) for i in decoded] == ["1.2.840.113549.1.9.7"]
    resp = await est_env.client.get(f"{PREFIX}/none/csrattrs")
    assert resp.status == 204


async def test_fullcmc_is_501_and_wrong_method_405(est_env: EstEnv) -> None:
    resp = await est_env.client.post(f"{PREFIX}/fullcmc", data=b"x")
    assert resp.status == 501
    assert "fullcmc" in await resp.text()
    resp = await est_env.client.post(f"{PREFIX}/cacerts", data=b"x")
    assert resp.status == 405
    resp = await est_env.client.get(f"{PREFIX}/simpleenroll")
    assert resp.status == 405
    resp = await est_env.client.get(f"{PREFIX}/default/unknown-op")
    assert resp.status == 404
    assert resp.headers["Content-Type"].startswith("text/plain")
