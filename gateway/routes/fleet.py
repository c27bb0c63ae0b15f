"""The fleet's route: every device's presence, last fix, outbox and refusals."""

from fastapi import APIRouter

from .. import fleet_view


def build_router(store, fleet_config=None, identity=None):
    """``/api/devices`` over the store's ``devices`` table (with each device's desired
    against reported configuration when given the ``FleetConfig``, and its certificate's
    state when given ``identity``, ``Revocations.identity``)."""
    router = APIRouter(tags=["fleet"])

    @router.get("/api/devices", summary="Devices: presence, last fix, outbox")
    def devices():
        return fleet_view.devices(store, fleet_config, identity)

    return router
