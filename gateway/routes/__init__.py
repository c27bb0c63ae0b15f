"""The intake API's routers, one per area; ``gridlink.gateway.api.create_app`` mounts them.

Each module's ``build_router(...)`` returns a FastAPI ``APIRouter`` over the objects it
serves (the queue, the task desk, the store); the routes do HTTP only and leave the
reading to the read models (``fleet_view``, ``dead_letter_view``, ``photo_view``,
``board_view``, ``geojson``) and the writing to the queue and the task desk.
"""
