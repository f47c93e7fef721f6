"""The operator's integrations page: a separate, token-protected listener next to the public receiver."""
