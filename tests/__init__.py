"""The test suite (pytest). Shared helpers: apphost (devhost fixture), functions (invoke functions in-process),
azdo_fake (Azure DevOps over `responses`); fakes/ and contracts/ for the store ports; hostile/ for repo and request
content that attacks."""
