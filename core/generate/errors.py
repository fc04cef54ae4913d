"""The one exception the manifest generator raises."""


class GenerationError(Exception):
    """A one-line reason naming the component, file or (credential-free) URL at fault."""
