"""Request dependencies: the process's services and the calling tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.api.errors import ApiError
from service.container import Services
from service.tenants import Tenant


def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]


def current_tenant(request: Request, services: ServicesDep) -> Tenant:
    """The tenant of the Bearer API key; 401 otherwise."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    tenant = services.tenants.authenticate(key.strip()) if scheme.lower() == "bearer" and key else None
    if tenant is None:
        raise ApiError(
            401, "unauthorized", "a valid API key is required (Authorization: Bearer <key>)",
            {"WWW-Authenticate": "Bearer"},
        )  # fmt: skip
    return tenant


TenantDep = Annotated[Tenant, Depends(current_tenant)]


def base_url(request: Request, services: ServicesDep) -> str:
    return services.settings.public_base_url or str(request.base_url)


BaseUrlDep = Annotated[str, Depends(base_url)]
