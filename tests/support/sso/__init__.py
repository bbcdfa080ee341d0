"""A real OAuth2/OpenID Connect provider standing in for Staff SSO (django-oauth-toolkit)."""
