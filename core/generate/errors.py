"""The one exception the manifest generator raises."""


from core.errors import Permanent


class GenerationError(Permanent):
    """A one-line reason naming the component, file or (credential-free) URL at fault."""
