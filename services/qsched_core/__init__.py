"""The ground floor: what every qsched service and the hardware layer share, with no gRPC.

Nothing here imports grpc, a service package, the SDK or the hardware layer (the layering
check in `make lint` keeps it so)."""
