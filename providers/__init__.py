"""Forge adapters: one contract for GitHub, GitLab, a local bare repository and the service."""
