"""Authentication: partner clients (OAuth2 client credentials, API keys) and staff logins."""
