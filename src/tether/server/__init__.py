"""The server: ``tether serve``'s API and web UI, API keys and projects."""

from typing import TYPE_CHECKING

from tether.core.lazy import lazy_exports

if TYPE_CHECKING:
    from tether.server.app import create_app
    from tether.server.config import ServerConfig
    from tether.server.roles import Permission, Role

# FastAPI loads with the app, not with the package: ``tether keys`` needs none of it.
__getattr__, __dir__ = lazy_exports(
    globals(),
    {".app": ("create_app",), ".config": ("ServerConfig",), ".roles": ("Permission", "Role")},
)

__all__ = ["Permission", "Role", "ServerConfig", "create_app"]
