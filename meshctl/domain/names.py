"""Kubernetes' spelling rules for names, shared by every part of the spec."""

from __future__ import annotations

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
# Kubernetes' limits: a DNS label (namespace, most names) 63, a DNS subdomain 253.
LABEL_MAX, SUBDOMAIN_MAX = 63, 253
