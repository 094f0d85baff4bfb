"""OPC UA driver: subscriptions and polling, security, certificates, browsing.

`OpcUaDriver` serves one device (both tag modes); `values` holds the pure StatusCode/value
normalization, `plan` the pure subscription planning, `pki` the certificates and trust list,
`browse` the address-space walk behind `edgegw opcua browse`.
"""

from __future__ import annotations

from drivers.opcua.driver import OpcUaDriver, data_change_filter, ua_node_id
from drivers.opcua.pki import CertificateNotTrusted, Pki, TrustList, ensure_app_certificate, pki_for
from drivers.opcua.plan import Plan, make_plan
from drivers.opcua.values import quality_of, reading_from, to_raw

__all__ = [
    "CertificateNotTrusted",
    "OpcUaDriver",
    "Pki",
    "Plan",
    "TrustList",
    "data_change_filter",
    "ensure_app_certificate",
    "make_plan",
    "pki_for",
    "quality_of",
    "reading_from",
    "to_raw",
    "ua_node_id",
]
