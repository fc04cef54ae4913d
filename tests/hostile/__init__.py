"""Hostile input: webhook bodies and ids, and repository content (regexes, YAML size and aliases, symlinks, sources)."""
