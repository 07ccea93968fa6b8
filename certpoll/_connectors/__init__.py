"""The CA-specific connectors: URLs, authentication, bodies, status words, JSON parsing."""
