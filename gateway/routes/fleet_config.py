"""Desired state's routes: change a device's or a group's configuration (fleet technicians,
audited), show each device's desired and reported configuration, and the drift."""

from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from .acting import Acting
from .bodies import BAD, DEVICE, NOT_FOUND

BUTTON_NAME = r"^[a-z][a-z0-9_]{0,23}$"


class ButtonClass(BaseModel):
    model_config = {"extra": "forbid"}

    kind: Literal["event", "component"] = Field(..., description="event (事件) or component (部件)")
    code: str = Field(..., pattern=r"^[0-9]{4,6}$", description="a class of the code book")
    text: str | None = Field(None, max_length=256, description="the report's text")


class Settings(BaseModel):
    """The profile settings a centre may change (bounds: device_profiles/schema.json)."""

    model_config = {"extra": "forbid"}

    buttons: dict[str, ButtonClass] | None = Field(
        None, description="button name → the class it reports")
    track_interval_s: float | None = Field(None, ge=1, le=3600)
    status_interval_s: float | None = Field(None, ge=5, le=3600)
    photo_max_bytes: int | None = Field(None, ge=20000, le=2000000)
    max_fix_age_s: float | None = Field(None, ge=1, le=600)


class ConfigBody(BaseModel):
    scope: str = Field(..., pattern="^(device|district|profile|list)$",
                       description="whom the change reaches: one device, a district, every "
                                   "device of a profile, or a list of devices")
    target: str | list[str] = Field(..., description="device id, 6-digit district code, "
                                                     "profile name, or a list of device ids")
    settings: Settings = Field(..., description="what to change; settings left out keep "
                                                "what earlier changes set")
    map: str | None = Field(None, pattern="^[0-9a-f]{64}$",
                            description="sha256 of the grid map the devices must hold")
    codebook: str | None = Field(None, max_length=80,
                                 description="code book id 'STANDARD@hash' the devices must hold")
    reset: list[str] = Field(default_factory=list, max_length=20,
                             description="settings set back to each device's profile: a "
                                         "setting's name (status_interval_s) or a button "
                                         "(buttons.horn); withdraws what earlier changes set")
    broker: str | None = Field(None, max_length=200,
                               description="a new broker, mqtt[s]://host[:port]: each device "
                                           "tries a connection first and keeps its broker, "
                                           "refusing with reason unreachable, when it fails")


def build_router(fleet, trail):
    """``/api/fleet/config`` over a ``FleetConfig``; a change is audited in the signed-in
    technician's name."""
    router = APIRouter(tags=["fleet"])

    @router.post("/api/fleet/config", status_code=201, responses=BAD,
                 summary="Change the configuration of a device or a group; sign and send it")
    def change(body: ConfigBody, request: Request):
        me = Acting(trail, request)
        settings = body.settings.model_dump(exclude_none=True)
        done = fleet.change(body.scope, body.target, settings, body.map, body.codebook,
                            operator=me.name, broker=body.broker, reset=body.reset)
        me.append("fleet.config", target=f"config:{done['version']}",
                  after={k: done[k] for k in ("scope", "target", "settings", "map", "codebook",
                                              "broker", "devices", "sent")})
        return done

    @router.get("/api/fleet/config", summary="Configuration changes, newest first")
    def changes(limit: int = Query(100, ge=1, le=500)):
        return fleet.changes(limit)

    @router.get("/api/fleet/config/devices", responses=NOT_FOUND,
                summary="Each device's desired and reported configuration, drift and last "
                        "refusal")
    def states(device: str | None = Query(None, pattern=DEVICE)):
        return fleet.states(device)

    @router.get("/api/fleet/config/devices/{device}", responses=NOT_FOUND,
                summary="One device's desired and reported configuration")
    def state(device: str):
        return fleet.states(device)[0]

    return router
