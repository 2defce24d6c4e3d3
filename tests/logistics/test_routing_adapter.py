"""The routing adapter with the real engine (VROOM through pyvroom): every plan is replayed
stop by stop against the problem — loads, windows, shifts, skills, pairs — and the reasons
given for what was left out are checked one by one. No database: plain dataclasses in and out."""

import itertools
import json
import math
import random
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from logistics.routing import (
    GreatCircleMatrix,
    Job,
    JobKind,
    Location,
    MatrixError,
    OsrmMatrix,
    PickupDelivery,
    Plan,
    Problem,
    Skill,
    StepKind,
    TimeWindow,
    UnassignedReason,
    VehicleSpec,
    solve,
)
from logistics.routing.matrix import UNREACHABLE_M, UNREACHABLE_S

H = 3600
DEPOT = Location(30.0, 119.6)
MATRIX = GreatCircleMatrix(detour_factor=1.3, speed_kmh=40.0)
COLD = frozenset({Skill.REFRIGERATED})


def van(vehicle_id, capacity_kg=800, skills=frozenset(), shift=(7 * H, 18 * H), cost_per_km=1.0):
    return VehicleSpec(
        id=vehicle_id,
        capacity_g=capacity_kg * 1000,
        shift=TimeWindow(*shift),
        start=DEPOT,
        end=DEPOT,
        skills=skills,
        cost_per_km=cost_per_km,
    )


def near(rng, spread=0.12):
    return Location(
        DEPOT.lat + rng.uniform(-spread, spread), DEPOT.lng + rng.uniform(-spread, spread)
    )


def county_day(seed, jobs=30, pairs=4, vehicles=3):
    """A seeded day: farm pickups and buyer deliveries around one center, a third of them
    with a 2–4 h window, some refrigerated, a few farm-to-buyer pairs; one refrigerated van."""
    rng = random.Random(seed)

    def windows():
        if rng.random() < 0.65:
            return ()
        start = rng.randrange(8 * H, 14 * H, 900)
        return (TimeWindow(start, start + rng.choice((2, 3, 4)) * H),)

    stops = tuple(
        Job(
            id=1000 + k,
            kind=rng.choice((JobKind.PICKUP, JobKind.DELIVERY)),
            location=near(rng),
            amount_g=rng.randint(5, 120) * 1000,
            service_s=rng.choice((300, 600)),
            windows=windows(),
            priority=rng.choice((0, 0, 50, 100)),
            skills=COLD if rng.random() < 0.2 else frozenset(),
        )
        for k in range(jobs)
    )
    runs = tuple(
        PickupDelivery(
            id=1000 + k,  # the same numbers as jobs on purpose: pairs are another namespace
            pickup=Job(id=1000 + k, kind=JobKind.PICKUP, location=near(rng), amount_g=0),
            delivery=Job(
                id=1000 + k,
                kind=JobKind.DELIVERY,
                location=near(rng),
                amount_g=0,
                windows=windows(),
            ),
            amount_g=rng.randint(10, 80) * 1000,
            skills=COLD if k == 0 else frozenset(),
        )
        for k in range(pairs)
    )
    fleet = (van(1, skills=COLD), *(van(k + 1) for k in range(1, vehicles)))
    return Problem(depot=DEPOT, vehicles=fleet, jobs=stops, pairs=runs)


# --- replaying a plan against its problem -----------------------------------------------


def replay(problem: Problem, plan: Plan, matrix=MATRIX) -> None:
    """Fail unless every route keeps loads, windows, shifts, skills and pairs, and every
    job and pair is either planned exactly once or reported unassigned."""
    index = {place: k for k, place in enumerate(_places(problem))}
    matrices = matrix.matrices(list(index))
    vehicles = {v.id: v for v in problem.vehicles}
    jobs = {j.id: j for j in problem.jobs}
    pairs = {p.id: p for p in problem.pairs}
    for route in plan.routes:
        vehicle = vehicles[route.vehicle_id]
        _replay_loads(route, vehicle, jobs, pairs)
        _replay_times(
            route, vehicle, jobs=jobs, pairs=pairs, index=index, durations=matrices.durations_s
        )
        travelled = _travelled(route, vehicle, index, matrices.distances_m)
        assert route.distance_m == travelled
        assert route.cost == pytest.approx(travelled / 1000 * vehicle.cost_per_km)
        for stop in route.stops:
            needs = jobs[stop.job_id].skills if stop.kind in _SINGLE else pairs[stop.job_id].skills
            assert needs <= vehicle.skills, f"{stop} needs {needs}, vehicle {vehicle.id} lacks it"
        kinds = [(s.kind, s.job_id) for s in route.stops]
        for pair_id in {s.job_id for s in route.stops if s.kind not in _SINGLE}:
            picked = kinds.index((StepKind.PAIR_PICKUP, pair_id))
            assert picked < kinds.index((StepKind.PAIR_DELIVERY, pair_id))
    stops = [s for r in plan.routes for s in r.stops]
    planned = sorted(s.job_id for s in stops if s.kind in _SINGLE)
    left = sorted(u.job_id for u in plan.unassigned if not u.is_pair)
    assert sorted(planned + left) == sorted(jobs)
    picked = sorted(s.job_id for s in stops if s.kind is StepKind.PAIR_PICKUP)
    dropped = sorted(s.job_id for s in stops if s.kind is StepKind.PAIR_DELIVERY)
    left = sorted(u.job_id for u in plan.unassigned if u.is_pair)
    assert picked == dropped
    assert sorted(picked + left) == sorted(pairs)


_SINGLE = (StepKind.PICKUP, StepKind.DELIVERY)


def _places(problem):
    seen = {problem.depot: None}
    for v in problem.vehicles:
        seen.setdefault(v.start)
        seen.setdefault(v.end)
    for job in problem.jobs:
        seen.setdefault(job.location)
    for pair in problem.pairs:
        seen.setdefault(pair.pickup.location)
        seen.setdefault(pair.delivery.location)
    return list(seen)


def _replay_loads(route, vehicle, jobs, pairs):
    """Deliveries leave the depot on board, pickups ride back: the load after each stop,
    recomputed from the jobs' amounts, must match the plan and never exceed capacity."""
    load = sum(jobs[s.job_id].amount_g for s in route.stops if s.kind is StepKind.DELIVERY)
    assert 0 <= load <= vehicle.capacity_g
    for stop in route.stops:
        if stop.kind is StepKind.PICKUP:
            load += jobs[stop.job_id].amount_g
        elif stop.kind is StepKind.DELIVERY:
            load -= jobs[stop.job_id].amount_g
        elif stop.kind is StepKind.PAIR_PICKUP:
            load += pairs[stop.job_id].amount_g
        else:
            load -= pairs[stop.job_id].amount_g
        assert stop.load_g == load, f"load after {stop}"
        assert 0 <= load <= vehicle.capacity_g, f"over capacity after {stop}"


def _replay_times(route, vehicle, *, jobs, pairs, index, durations):
    """Arrival = previous service end + travel; service starts at max(arrival, window
    start) inside a window and lasts the job's service, after its setup when the stop
    before was not of the same visit (kind and `visit` at the same place); the route leaves
    and returns within the shift, and lasts from leaving to coming back: its driving, its
    service and its waiting."""
    assert vehicle.shift.start <= route.departure_s
    clock, here, driving = route.departure_s, index[vehicle.start], 0
    visit = None
    for stop in route.stops:
        clock += durations[here][index[stop.location]]
        driving += durations[here][index[stop.location]]
        assert stop.arrival_s == clock, f"arrival at {stop}"
        job = _job_of(stop, jobs, pairs)
        windows = job.windows or (TimeWindow(0, 24 * H),)
        starts = [max(clock, w.start) for w in windows if clock <= w.end]
        assert starts, f"{stop} arrives after all of its windows {windows}"
        assert stop.arrival_s + stop.wait_s == min(starts), f"service start at {stop}"
        was, visit = visit, (stop.location, job.kind, job.visit)
        assert stop.service_s == job.service_s + (0 if visit == was else job.setup_s)
        clock, here = min(starts) + stop.service_s, index[stop.location]
    clock += durations[here][index[vehicle.end]]
    driving += durations[here][index[vehicle.end]]
    assert route.return_s == clock
    assert route.return_s <= vehicle.shift.end
    assert route.driving_s == driving
    served = sum(stop.service_s + stop.wait_s for stop in route.stops)
    assert route.duration_s == route.return_s - route.departure_s == driving + served


def _job_of(stop, jobs, pairs):
    if stop.kind in _SINGLE:
        return jobs[stop.job_id]
    pair = pairs[stop.job_id]
    return pair.pickup if stop.kind is StepKind.PAIR_PICKUP else pair.delivery


def _travelled(route, vehicle, index, distances):
    path = [index[vehicle.start], *(index[s.location] for s in route.stops), index[vehicle.end]]
    return sum(distances[a][b] for a, b in itertools.pairwise(path))


# --- plans keep every constraint ---------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_seeded_day_is_planned_within_every_constraint(seed):
    problem = county_day(seed)
    plan = solve(problem, MATRIX)

    replay(problem, plan)
    assert plan.routes
    assert plan.summary["cost"] == pytest.approx(sum(r.cost for r in plan.routes))
    assert plan.summary["distance_m"] == sum(r.distance_m for r in plan.routes)
    assert plan.summary["exploration_level"] == 5  # ≤ 150 stops
    assert set(plan.summary["computing_times"]) >= {"loading", "solving", "matrix_ms"}


def test_refrigerated_goods_ride_only_in_the_refrigerated_van():
    problem = county_day(5, jobs=40, pairs=3)
    cold = {j.id for j in problem.jobs if j.skills}
    assert cold  # the seed has some

    plan = solve(problem, MATRIX)

    replay(problem, plan)
    carried = {s.job_id: r.vehicle_id for r in plan.routes for s in r.stops if s.kind in _SINGLE}
    assert {carried[j] for j in cold if j in carried} == {1}


def test_a_farm_to_buyer_pair_is_picked_up_first_by_the_same_van():
    farm, buyer = Location(30.05, 119.65), Location(29.95, 119.55)
    pair = PickupDelivery(
        id=7,
        pickup=Job(id=7, kind=JobKind.PICKUP, location=farm, amount_g=0, service_s=600),
        delivery=Job(
            id=7,
            kind=JobKind.DELIVERY,
            location=buyer,
            amount_g=0,
            windows=(TimeWindow(9 * H, 11 * H),),
        ),
        amount_g=300_000,
    )
    problem = Problem(depot=DEPOT, vehicles=(van(1), van(2)), pairs=(pair,))

    plan = solve(problem, MATRIX)

    replay(problem, plan)
    (route,) = plan.routes
    assert [(s.kind, s.job_id, s.load_g) for s in route.stops] == [
        (StepKind.PAIR_PICKUP, 7, 300_000),
        (StepKind.PAIR_DELIVERY, 7, 0),
    ]


def test_a_budget_buys_a_plan_no_worse_and_still_valid():
    problem = county_day(6, jobs=60, pairs=4, vehicles=4)
    plain = solve(problem, MATRIX, exploration_level=1)

    improved = solve(problem, MATRIX, exploration_level=1, budget_s=1.5)

    replay(problem, improved)
    assert served_key(problem, improved) <= served_key(problem, plain)
    assert improved.summary["improve"]["rounds"] > 0


def test_improving_for_a_number_of_rounds_is_reproducible_and_valid():
    problem = county_day(11, jobs=50, pairs=4, vehicles=4)

    first = solve(problem, MATRIX, exploration_level=0, rounds=40, seed=3)
    second = solve(problem, MATRIX, exploration_level=0, rounds=40, seed=3)
    start = solve(problem, MATRIX, exploration_level=0)

    replay(problem, first)
    assert first.routes == second.routes
    assert first.unassigned == second.unassigned
    assert first.summary["improve"]["rounds"] == 40
    assert served_key(problem, first) <= served_key(problem, start)


def served_key(problem, plan):
    """The engine's order of merit: priority served, then stops served, then cost."""
    priority = {("job", j.id): j.priority for j in problem.jobs}
    priority |= {("pair", p.id): p.priority for p in problem.pairs}
    left = [("pair" if u.is_pair else "job", u.job_id) for u in plan.unassigned]
    return (sum(priority[k] for k in left), len(left), plan.summary["cost"])


def test_a_route_lasts_its_driving_service_and_waiting_not_its_driving_alone():
    morning = Job(
        id=1,
        kind=JobKind.DELIVERY,
        location=Location(30.02, 119.6),
        amount_g=1000,
        service_s=300,
        windows=(TimeWindow(7 * H, 8 * H),),
    )
    noon = Job(
        id=2,
        kind=JobKind.DELIVERY,
        location=Location(30.0, 119.62),
        amount_g=1000,
        service_s=600,
        windows=(TimeWindow(12 * H, 13 * H),),
    )  # a van cannot drive so slowly: it waits there for the window to open
    problem = Problem(depot=DEPOT, vehicles=(van(1),), jobs=(morning, noon))

    plan = solve(problem, MATRIX)

    replay(problem, plan)
    [route] = plan.routes
    assert [s.job_id for s in route.stops] == [1, 2]
    t = MATRIX.matrices([DEPOT, morning.location, noon.location]).durations_s
    driving = t[0][1] + t[1][2] + t[2][0]
    assert route.driving_s == driving
    wait = route.stops[1].wait_s
    assert wait > 3 * H  # served at 12:00 sharp after the 07:xx stop and a short drive
    assert route.stops[1].arrival_s + wait == 12 * H
    assert route.duration_s == driving + 300 + 600 + wait
    assert plan.summary["duration_s"] == route.duration_s
    assert plan.summary["driving_s"] == driving


def test_jobs_of_one_visit_pay_the_places_setup_once():
    """Three pickups at one farm (setup 300 s, service 60 s each) and one at another farm:
    the farm's pickups, one after another, pay its setup once. A delivery at the farm is a
    visit of its own (another order's goods) and pays its own, wherever it comes."""
    farm, other = Location(30.05, 119.62), Location(30.04, 119.66)

    def job(job_id, kind, where, visit=0):
        return Job(
            id=job_id,
            kind=kind,
            location=where,
            amount_g=1000,
            setup_s=300,
            service_s=60,
            visit=visit,
        )

    pickups = (*(job(n, JobKind.PICKUP, farm) for n in (1, 2, 3)), job(4, JobKind.PICKUP, other))
    problem = Problem(depot=DEPOT, vehicles=(van(1),), jobs=pickups)

    plan = solve(problem, MATRIX)

    replay(problem, plan)
    [route] = plan.routes
    at_farm = [s for s in route.stops if s.location == farm]
    assert [s.service_s for s in at_farm] == [360, 60, 60]
    first = at_farm[0].arrival_s
    assert [s.arrival_s for s in at_farm] == [first, first + 360, first + 420]
    assert route.duration_s == route.driving_s + 2 * 360 + 2 * 60

    also = replace(problem, jobs=(*pickups, job(5, JobKind.DELIVERY, farm, visit=7)))
    plan = solve(also, MATRIX)

    replay(also, plan)
    [route] = plan.routes
    [delivery] = [s for s in route.stops if s.kind is StepKind.DELIVERY]
    assert delivery.service_s == 360


# --- what was left out, and why --------------------------------------------------------


def test_a_refrigerated_job_without_a_refrigerated_van_has_no_vehicle_with_skills():
    cold = Job(
        id=1, kind=JobKind.DELIVERY, location=near(random.Random(1)), amount_g=1000, skills=COLD
    )
    plain = Job(id=2, kind=JobKind.DELIVERY, location=near(random.Random(2)), amount_g=1000)
    problem = Problem(depot=DEPOT, vehicles=(van(1),), jobs=(cold, plain))

    plan = solve(problem, MATRIX)

    replay(problem, plan)
    assert [(u.job_id, u.reason) for u in plan.unassigned] == [
        (1, UnassignedReason.NO_VEHICLE_WITH_SKILLS)
    ]
    assert [s.job_id for r in plan.routes for s in r.stops] == [2]


def test_a_job_heavier_than_every_capable_van_is_too_heavy():
    rng = random.Random(3)
    huge = Job(id=1, kind=JobKind.PICKUP, location=near(rng), amount_g=2_000_000)
    cold_heavy = Job(
        id=2, kind=JobKind.PICKUP, location=near(rng), amount_g=600_000, skills=COLD
    )  # a plain van could carry it, the cold one cannot
    fine = Job(id=3, kind=JobKind.PICKUP, location=near(rng), amount_g=500_000)
    problem = Problem(
        depot=DEPOT,
        vehicles=(van(1, capacity_kg=800), van(2, capacity_kg=500, skills=COLD)),
        jobs=(huge, cold_heavy, fine),
    )

    plan = solve(problem, MATRIX)

    replay(problem, plan)
    assert {(u.job_id, u.reason) for u in plan.unassigned} == {
        (1, UnassignedReason.TOO_HEAVY),
        (2, UnassignedReason.TOO_HEAVY),
    }


def test_a_window_at_three_in_the_morning_is_outside_shifts():
    rng = random.Random(4)
    night = Job(
        id=1,
        kind=JobKind.DELIVERY,
        location=near(rng),
        amount_g=1000,
        windows=(TimeWindow(3 * H, 4 * H),),
    )
    # Opens at 07:00 sharp, but the van only leaves the depot at 07:00: unreachable in time.
    dawn = Job(
        id=2,
        kind=JobKind.DELIVERY,
        location=Location(30.3, 119.6),
        amount_g=1000,
        windows=(TimeWindow(6 * H, 7 * H + 60),),
    )
    day = Job(
        id=3,
        kind=JobKind.DELIVERY,
        location=near(rng),
        amount_g=1000,
        windows=(TimeWindow(3 * H, 4 * H), TimeWindow(10 * H, 12 * H)),
    )
    problem = Problem(
        depot=DEPOT, vehicles=(van(1), van(2, shift=(8 * H, 17 * H))), jobs=(night, dawn, day)
    )

    plan = solve(problem, MATRIX)

    replay(problem, plan)
    assert {(u.job_id, u.reason) for u in plan.unassigned} == {
        (1, UnassignedReason.OUTSIDE_SHIFTS),
        (2, UnassignedReason.OUTSIDE_SHIFTS),
    }
    (stop,) = [s for r in plan.routes for s in r.stops]
    assert stop.job_id == 3
    assert stop.arrival_s <= 12 * H


def test_one_small_van_keeps_the_high_priority_jobs_and_has_no_room_for_the_rest():
    rng = random.Random(5)
    jobs = tuple(
        Job(
            id=k,
            kind=JobKind.DELIVERY,
            location=near(rng),
            amount_g=100_000,
            priority=100 if k % 2 else 0,
        )
        for k in range(12)
    )  # 1,200 kg for a 500 kg van: five fit
    problem = Problem(depot=DEPOT, vehicles=(van(1, capacity_kg=500),), jobs=jobs)

    plan = solve(problem, MATRIX)

    replay(problem, plan)
    served = {s.job_id for r in plan.routes for s in r.stops}
    assert len(served) == 5
    assert all(k % 2 for k in served)  # five of the six priority-100 jobs
    assert len(plan.unassigned) == 7
    assert {u.reason for u in plan.unassigned} == {UnassignedReason.NO_ROOM}
    assert sum(1 for u in plan.unassigned if u.job_id % 2) == 1


def test_no_vehicles_leaves_every_job_unassigned_without_calling_the_engine():
    day = county_day(7, jobs=3, pairs=1)
    milk = Job(
        id=2000, kind=JobKind.PICKUP, location=near(random.Random(8)), amount_g=1, skills=COLD
    )
    problem = replace(day, vehicles=(), jobs=(*day.jobs, milk))

    plan = solve(problem, MATRIX)

    assert plan.routes == ()
    # the milk too: there is no vehicle at all, not just none with the skills it needs
    assert {u.reason for u in plan.unassigned} == {UnassignedReason.NO_VEHICLE}
    assert sorted((u.is_pair, u.job_id) for u in plan.unassigned) == [
        (False, 1000),
        (False, 1001),
        (False, 1002),
        (False, 2000),
        (True, 1000),
    ]


# --- edges ---------------------------------------------------------------------------------


def test_an_empty_problem_makes_an_empty_plan():
    plan = solve(Problem(depot=DEPOT, vehicles=(van(1),)), MATRIX)

    assert plan.routes == ()
    assert plan.unassigned == ()
    assert plan.summary["cost"] == 0
    assert plan.summary["distance_m"] == 0


def test_the_same_problem_twice_makes_the_same_plan():
    problem = county_day(8, jobs=40, pairs=4)

    first, second = solve(problem, MATRIX), solve(problem, MATRIX)

    assert first.routes == second.routes
    assert first.unassigned == second.unassigned
    assert first.summary["cost"] == second.summary["cost"]


def test_duplicate_ids_are_refused_before_the_engine_runs():
    problem = county_day(9, jobs=3, pairs=0)
    twice = replace(problem, jobs=(*problem.jobs, problem.jobs[0]))

    with pytest.raises(ValueError, match="duplicate job ids: \\[1000\\]"):
        solve(twice, MATRIX)


def test_two_jobs_at_one_farm_share_a_matrix_row_and_are_served_together():
    farm = Location(30.05, 119.62)
    jobs = (
        Job(id=1, kind=JobKind.PICKUP, location=farm, amount_g=10_000),
        Job(id=2, kind=JobKind.PICKUP, location=farm, amount_g=20_000),
    )
    problem = Problem(depot=DEPOT, vehicles=(van(1),), jobs=jobs)

    plan = solve(problem, MATRIX)

    replay(problem, plan)
    (route,) = plan.routes
    first, second = route.stops
    assert second.arrival_s == first.arrival_s + first.service_s  # no travel in between
    assert route.stops[-1].load_g == 30_000


# --- matrices ------------------------------------------------------------------------------


def test_great_circle_matrix_matches_haversine_by_hand():
    # One degree of arc on a 6,371 km sphere is 6,371,000 × π / 180 = 111,194.93 m.
    # (30.0, 119.6) → (30.4, 119.6): 0.4° of latitude = 44,477.97 m.
    # (0, 0) → (1, 1): by the spherical law of cosines,
    #   acos(sin 0 · sin 1° + cos 0 · cos 1° · cos 1°) = 0.024682 rad → 157,249.4 m.
    places = [
        Location(0.0, 0.0),
        Location(0.0, 1.0),
        Location(30.0, 119.6),
        Location(30.4, 119.6),
        Location(1.0, 1.0),
    ]
    cosines = math.acos(math.cos(math.radians(1)) ** 2) * 6_371_000

    plain = GreatCircleMatrix(detour_factor=1.0, speed_kmh=36.0).matrices(places)
    winding = GreatCircleMatrix(detour_factor=1.3, speed_kmh=36.0).matrices(places)

    assert plain.distances_m[0][1] == 111_195
    assert plain.distances_m[2][3] == 44_478
    assert plain.distances_m[0][4] == round(cosines) == 157_249
    assert plain.durations_s[0][1] == 11_119  # 111,194.93 m at 10 m/s
    assert winding.distances_m[0][1] == round(111_194.93 * 1.3) == 144_553
    assert winding.durations_s[0][1] == 14_455
    for m in (plain.distances_m, plain.durations_s):
        assert all(m[i][i] == 0 for i in range(5))
        assert all(m[i][j] == m[j][i] for i in range(5) for j in range(5))


def test_great_circle_matrix_of_a_thousand_places_is_quick():
    rng = random.Random(10)
    places = [near(rng, spread=0.5) for _ in range(1000)]

    matrices = MATRIX.matrices(places)

    assert len(matrices.distances_m) == 1000
    assert all(len(row) == 1000 for row in matrices.durations_s)


class _Osrm(BaseHTTPRequestHandler):
    """Answers /table like osrm-routed: canned JSON, or values computed from the
    coordinates asked for (so that blocks can be checked to land in the right cells)."""

    canned: dict | None = None
    paths: list[str]

    def do_GET(self):
        self.paths.append(self.path)
        url = urlsplit(self.path)
        if self.canned is not None:
            body = self.canned
        else:
            coords = [tuple(map(float, c.split(","))) for c in url.path.split("/")[-1].split(";")]
            query = parse_qs(url.query)
            sources = [int(k) for k in query.get("sources", [""])[0].split(";") if k] or range(
                len(coords)
            )
            targets = [int(k) for k in query.get("destinations", [""])[0].split(";") if k] or (
                range(len(coords))
            )

            def fake(a, b):
                return abs(a[0] - b[0]) * 1e4 + abs(a[1] - b[1]) * 1e3

            body = {
                "code": "Ok",
                "durations": [[fake(coords[i], coords[j]) for j in targets] for i in sources],
                "distances": [[fake(coords[i], coords[j]) * 10 for j in targets] for i in sources],
            }
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def osrm():
    handler = type("Handler", (_Osrm,), {"paths": [], "canned": None})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_osrm_matrix_reads_a_table_answer(osrm):
    handler, url = osrm
    handler.canned = {
        "code": "Ok",
        "durations": [[0, 612.4, 901.6], [598.1, 0, 455.5], [880.0, 470.2, 0]],
        "distances": [[0, 8123.7, 12011.2], [8001.9, 0, None], [11890.4, 6010.0, 0]],
        "sources": [],
        "destinations": [],
    }
    places = [Location(30.0, 119.6), Location(30.05, 119.65), Location(29.98, 119.7)]

    matrices = OsrmMatrix(url, timeout=5).matrices(places)

    assert matrices.durations_s == [[0, 612, 902], [598, 0, 456], [880, 470, 0]]
    assert matrices.distances_m == [[0, 8124, 12011], [8002, 0, UNREACHABLE_M], [11890, 6010, 0]]
    (path,) = handler.paths
    assert path == (
        "/table/v1/driving/119.600000,30.000000;119.650000,30.050000;119.700000,29.980000"
        "?annotations=duration,distance"
    )


def test_osrm_matrix_asks_in_blocks_and_puts_them_together(osrm):
    handler, url = osrm
    places = [Location(30.0 + k / 100, 119.6 + k / 50) for k in range(5)]

    matrices = OsrmMatrix(url, block=2).matrices(places)

    assert len(handler.paths) == 9  # 3 × 3 blocks of at most 2 × 2
    for i, a in enumerate(places):
        for j, b in enumerate(places):
            expected = abs(a.lng - b.lng) * 1e4 + abs(a.lat - b.lat) * 1e3
            assert matrices.durations_s[i][j] == round(expected)
            assert matrices.distances_m[i][j] == round(expected * 10)


def test_osrm_matrix_reports_a_refusal_and_an_unroutable_pair(osrm):
    handler, url = osrm
    handler.canned = {"code": "NoTable", "message": "too big"}
    with pytest.raises(MatrixError, match="NoTable"):
        OsrmMatrix(url).matrices([DEPOT, Location(30.1, 119.7)])

    handler.canned = {"code": "Ok", "durations": [[0, None], [None, 0]], "distances": [[0, 1]]}
    with pytest.raises(MatrixError, match="distances"):
        OsrmMatrix(url).matrices([DEPOT, Location(30.1, 119.7)])

    handler.canned = {"code": "Ok", "durations": [[0, None], [5, 0]], "distances": [[0, 1], [1, 0]]}
    assert OsrmMatrix(url).matrices([DEPOT, Location(30.1, 119.7)]).durations_s == [
        [0, UNREACHABLE_S],
        [5, 0],
    ]


def test_osrm_matrix_that_cannot_connect_raises_a_matrix_error():
    with pytest.raises(MatrixError, match="failed"):
        OsrmMatrix("http://127.0.0.1:9", timeout=1).matrices([DEPOT, Location(30.1, 119.7)])


def test_a_vehicle_that_costs_nothing_still_drives_the_short_way():
    day = county_day(11, jobs=9, pairs=0, vehicles=1)
    priced = solve(replace(day, vehicles=(van(1, cost_per_km=1.5),)), MATRIX)
    free = solve(replace(day, vehicles=(van(1, cost_per_km=0),)), MATRIX)
    assert len(priced.routes) == len(free.routes) == 1
    assert free.routes[0].distance_m == priced.routes[0].distance_m
