"""Local stand-ins shared by the tests, the benchmarks and the demo (never deployed): a private Azurite on free
loopback ports (`azurite`), bare git repositories on disk (`gitrepos`) and a Flux Receiver that verifies requests
as notification-controller does (`flux_receiver`)."""

__all__ = ["azurite", "flux_receiver", "gitrepos"]
