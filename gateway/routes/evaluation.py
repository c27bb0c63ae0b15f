"""The evaluation routes: supervisors, their devices, shifts, work grids and duty (the
roster), and the CJ/T 292 rates and patrol coverage read from them, as JSON or CSV."""

import csv
import io

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ..coverage import week_of
from ..queue import Invalid
from .acting import Acting
from .bodies import BAD, CONFLICT, DEVICE, ISO_TIME, NOT_FOUND

IDENT = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"
HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
# a day its month lacks (30 February) is refused by the server, with a 400 naming it
DAY = r"^(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
TIME = ISO_TIME
_DIM = "(supervisor|device|grid|street|department)"
BY = rf"^{_DIM}(,{_DIM}){{0,4}}$"
FORMAT = Query("json", pattern="^(json|csv)$", description="json, or csv for a spreadsheet")
SUPERVISOR = Path(..., pattern=IDENT, description="the 监督员's id")
WORK_GRID = Path(..., pattern=IDENT, description="the work grid's id")
SHIFT = Path(..., pattern=IDENT, description="the shift's name")
CSV_RESPONSE = {200: {"content": {"text/csv": {}},
                      "description": "the rows (or, with format=csv, a CSV file)"}}


class SupervisorBody(BaseModel):
    name: str = Field(..., min_length=1, max_length=64, description="监督员's name")


class CarryBody(BaseModel):
    device: str = Field(..., pattern=DEVICE)
    since: str | None = Field(None, pattern=TIME, description="default now")


class ShiftBody(BaseModel):
    starts: str = Field(..., pattern=HHMM, description="HH:MM, Beijing time")
    ends: str = Field(..., pattern=HHMM, description="at or before starts: the next day")


class WorkGridBody(BaseModel):
    supervisor: str = Field(..., pattern=IDENT)
    shift: str = Field(..., pattern=IDENT)
    cells: list[str] = Field(..., min_length=1, max_length=5000,
                             description="cell codes or code prefixes (a community: 12 digits)")
    name: str | None = Field(None, max_length=64)


class DutyBody(BaseModel):
    supervisor: str = Field(..., pattern=IDENT)
    on_at: str = Field(..., pattern=TIME)
    off_at: str = Field(..., pattern=TIME)
    shift: str | None = Field(None, pattern=IDENT)


class ScheduleBody(BaseModel):
    supervisor: str = Field(..., pattern=IDENT)
    shift: str = Field(..., pattern=IDENT)
    first_day: str = Field(..., pattern=DAY, description="Beijing date YYYY-MM-DD")
    last_day: str = Field(..., pattern=DAY)


def csv_response(rows, name, columns=None):
    """``rows`` (dicts) as a CSV download (UTF-8 with a BOM, so spreadsheets read 中文);
    lists are joined by spaces.  ``columns`` heads a table with no rows."""
    out = io.StringIO()
    out.write("\ufeff")
    columns = list(rows[0]) if rows else list(columns or [])
    writer = csv.writer(out)
    writer.writerow(columns)
    for r in rows:
        writer.writerow([" ".join(v) if isinstance(v, list) else ("" if v is None else v)
                         for v in (r[c] for c in columns)])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})


def build_router(roster, rates, coverage, trail):
    """Roster routes (changes audited in the signed-in operator's name) and the read-only
    ``/api/evaluation/*`` figures over a ``Roster``, ``Rates`` and ``Coverage``."""
    router = APIRouter(tags=["evaluation"])

    def audit(request, action, target, before=None, after=None):
        Acting(trail, request).append(action, target=target, before=before, after=after)

    # ------------------------------------------------------------ the roster

    @router.get("/api/supervisors", summary="监督员 and the devices they carry now")
    def supervisors():
        return roster.supervisors()

    @router.put("/api/supervisors/{supervisor_id}", responses=BAD,
                summary="Add or rename a 监督员")
    def put_supervisor(body: SupervisorBody, request: Request, supervisor_id: str = SUPERVISOR):
        done = roster.put_supervisor(supervisor_id, body.name)
        audit(request, "supervisor.put", f"supervisor:{done['id']}", after=done)
        return done

    @router.post("/api/supervisors/{supervisor_id}/devices",
                 responses={**BAD, **NOT_FOUND, **CONFLICT},
                 summary="The 监督员 carries a device from now (or since)")
    def carry(body: CarryBody, request: Request, supervisor_id: str = SUPERVISOR):
        done = roster.carry(supervisor_id, body.device, body.since)
        audit(request, "device.carry", f"device:{done['device']}", after=done)
        return done

    @router.get("/api/carries", summary="Who carried which device when")
    def carries(supervisor: str | None = Query(None, pattern=IDENT)):
        return roster.carries(supervisor)

    @router.get("/api/shifts", summary="Shifts (Beijing time)")
    def shifts():
        return roster.shifts()

    @router.put("/api/shifts/{name}", responses=BAD, summary="Add or change a shift",
                description="ends must differ from starts (400).")
    def put_shift(body: ShiftBody, request: Request, name: str = SHIFT):
        done = roster.put_shift(name, body.starts, body.ends)
        audit(request, "shift.put", f"shift:{done['name']}", after=done)
        return done

    @router.get("/api/work-grids", summary="Work grids (监督员工作网格) with their cells")
    def work_grids(supervisor: str | None = Query(None, pattern=IDENT),
                   shift: str | None = Query(None, pattern=IDENT)):
        return roster.work_grids(supervisor, shift)

    @router.put("/api/work-grids/{work_grid_id}", responses={**BAD, **NOT_FOUND, **CONFLICT},
                summary="Create or replace a work grid (cells by code or prefix)",
                description="Every item must name cells of the loaded grid map (400, naming "
                            "the others); a cell another work grid of the shift holds: 409.")
    def put_work_grid(body: WorkGridBody, request: Request, work_grid_id: str = WORK_GRID):
        return Acting(trail, request).changed(
            "work_grid.put", f"work_grid:{work_grid_id}", roster.work_grids,
            lambda g: g["id"] == work_grid_id,
            lambda: roster.put_work_grid(work_grid_id, **body.model_dump()))

    @router.delete("/api/work-grids/{work_grid_id}", status_code=204,
                   responses={**BAD, **NOT_FOUND}, summary="Remove a work grid")
    def delete_work_grid(request: Request, work_grid_id: str = WORK_GRID):
        Acting(trail, request).changed("work_grid.delete", f"work_grid:{work_grid_id}",
                                       roster.work_grids, lambda g: g["id"] == work_grid_id,
                                       lambda: roster.delete_work_grid(work_grid_id))

    @router.get("/api/duty", summary="Duty periods overlapping a window")
    def duty(supervisor: str | None = Query(None, pattern=IDENT),
             since: str | None = Query(None, pattern=TIME),
             until: str | None = Query(None, pattern=TIME)):
        return roster.duty(supervisor, since, until)

    @router.post("/api/duty", status_code=201, responses={**BAD, **NOT_FOUND, **CONFLICT},
                 summary="One duty period (上班 → 下班)",
                 description="off_at must come after on_at (400); one overlapping another "
                             "period of the supervisor: 409.")
    def put_duty(body: DutyBody, request: Request):
        done = roster.put_duty(**body.model_dump())
        audit(request, "duty.add", f"supervisor:{done['supervisor']}", after=done)
        return done

    @router.post("/api/duty/schedule", status_code=201,
                 responses={**BAD, **NOT_FOUND, **CONFLICT},
                 summary="Duty periods for a shift on every day of a range (all or none)",
                 description="last_day on or after first_day, at most 366 days (400).")
    def schedule(body: ScheduleBody, request: Request):
        made = roster.schedule(**body.model_dump())
        audit(request, "duty.schedule", f"supervisor:{body.supervisor}",
              after={"shift": body.shift, "first_day": body.first_day,
                     "last_day": body.last_day, "periods": len(made)})
        return made

    # ------------------------------------------------------------ the figures

    @router.get("/api/evaluation/rates", responses={**BAD, **CSV_RESPONSE},
                summary="有效上报率, 按时核实率, 按时核查率, 结案率, 按期结案率, stage times, "
                        "reports per duty hour",
                description="since before until, at most 366 days apart (400); default the "
                            "30 days up to now.  Formulas: docs/evaluation.md.")
    def rate_table(by: str = Query("supervisor", pattern=BY,
                                   description="comma-separated: supervisor, device, grid, "
                                               "street, department (each once)"),
                   period: str = Query("day", pattern="^(day|week|month|all)$"),
                   since: str | None = Query(None, pattern=TIME),
                   until: str | None = Query(None, pattern=TIME),
                   format: str = FORMAT):
        table = rates.table(by=by, period=period, since=since, until=until)
        if format == "csv":
            return csv_response(table["rows"], f"rates-{period}", table["columns"])
        return table

    @router.get("/api/evaluation/coverage", responses={**BAD, **NOT_FOUND, **CSV_RESPONSE},
                summary="Patrol coverage of each duty period starting in a window",
                description="since before until, at most 31 days apart (400); a device "
                            "carried by nobody at since: 404.")
    def shift_coverage(since: str = Query(..., pattern=TIME),
                       until: str = Query(..., pattern=TIME),
                       supervisor: str | None = Query(None, pattern=IDENT),
                       device: str | None = Query(None, pattern=DEVICE,
                                                  description="its carrier at since"),
                       format: str = FORMAT):
        if device is not None:
            if supervisor is not None:
                raise Invalid("give supervisor or device, not both")
            supervisor = roster.carrier(device, since)
        found = coverage.shifts(since, until, supervisor)
        if format == "csv":
            return csv_response(found, "coverage")
        return found

    @router.get("/api/evaluation/unvisited", responses={**BAD, **CSV_RESPONSE},
                summary="Cells of each work grid never visited in a week (or a window)",
                description="week, or since and until (at most 31 days apart): one of the "
                            "two (400).")
    def unvisited(week: str | None = Query(None, pattern=DAY,
                                           description="any Beijing date of the week"),
                  since: str | None = Query(None, pattern=TIME),
                  until: str | None = Query(None, pattern=TIME),
                  supervisor: str | None = Query(None, pattern=IDENT),
                  format: str = FORMAT):
        if (week is None) == (since is None and until is None):
            raise Invalid("give week, or since and until (not both)")
        if week is not None:
            since, until = week_of(week)
        found = coverage.unvisited(since, until, supervisor)
        if format == "csv":
            return csv_response(found, f"unvisited-{week or 'window'}")
        return found

    return router
