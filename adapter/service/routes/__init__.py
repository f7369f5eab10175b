"""The service's endpoints, one router per group; ``create_app`` includes them all."""

from adapter.service.routes import accept, audit, deliveries, gitb, mapping, operations, validate

ROUTERS = (
    validate.router,
    accept.router,
    operations.discovery,
    mapping.router,
    deliveries.router,
    audit.router,
    gitb.router,
    operations.router,
)

__all__ = ["ROUTERS"]
