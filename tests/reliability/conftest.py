"""Reliability suite: the functional fixtures (moto with the template's resources, tenants)."""

from tests.functional.conftest import Api, api, aws, other_tenant, tenant

__all__ = ["Api", "api", "aws", "other_tenant", "tenant"]
