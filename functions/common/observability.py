"""Powertools Logger, Tracer and Metrics shared by every function.

Building them creates no AWS client; their settings come from the POWERTOOLS_* environment
variables set in ``template.yaml`` (and by the local stack).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger(service="serendip")
tracer = Tracer(service="serendip")
metrics = Metrics(namespace="Serendip", service="serendip")
