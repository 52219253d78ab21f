"""Teaches drf-spectacular that the X-Admin-Key header is how clients authenticate."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "phase3.auth.ApiKeyAuthentication"
    name = "AdminKey"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "X-Admin-Key"}
