"""Route maps drawn from coordinates alone: no tiles, nothing fetched, standard library only.

The projection is equirectangular around the route's bounding box, longitudes shrunk by the
cosine of its middle latitude, so at county scale a kilometre is as long east-west as
north-south and the scale bar holds in both directions. North is up. Text goes through
ElementTree, which escapes it, so a name like `A&B <冷藏>` cannot break the document.
"""

import itertools
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from logistics.models import Route, StopKind

EARTH_RADIUS_KM = 6371.0
KM_PER_DEGREE = EARTH_RADIUS_KM * math.pi / 180
SVG_NS = "http://www.w3.org/2000/svg"

WIDTH, HEIGHT = 800, 600
HEADER, FOOTER = 56, 56  # title above the map, legend and scale bar below it
PADDING = 36  # around the bounding box, so markers on its edge are drawn whole
MIN_EXTENT_KM = 2.0  # a route whose stops all sit together is still drawn at a sane zoom
RADIUS = 11
SCALE_STEPS_KM = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
FONT = "'Noto Sans CJK SC', 'PingFang SC', 'Microsoft YaHei', sans-serif"
CENTER_COLOUR = "#c62828"
PICKUP_COLOUR = "#2e7d32"
DELIVERY_COLOUR = "#1565c0"
PATH_COLOUR = "#616161"


@dataclass(frozen=True)
class MapStop:
    sequence: int
    kind: str  # StopKind: pickup or delivery
    lat: float
    lng: float


@dataclass(frozen=True)
class RouteMap:
    """What a map shows: a title, the center the route starts and ends at, its stops."""

    title: str
    center_name: str
    center_lat: float
    center_lng: float
    stops: tuple[MapStop, ...]


def route_map(route: Route) -> RouteMap:
    """The map of a route fetched with its center, vehicle and stops (routes_of_staff)."""
    vehicle = (
        f"{route.vehicle.name} ({route.vehicle.capacity_kg.normalize():f} kg)"
        if route.vehicle
        else "no vehicle"
    )
    return RouteMap(
        title=f"Route {route.pk} · {route.date:%Y-%m-%d} · {vehicle} · {route.distance_km:.1f} km",
        center_name=route.service_center.name,
        center_lat=float(route.service_center.lat),
        center_lng=float(route.service_center.lng),
        stops=tuple(
            MapStop(stop.sequence, stop.kind, float(stop.lat), float(stop.lng))
            for stop in sorted(route.stops.all(), key=lambda stop: stop.sequence)
        ),
    )


class _Projection:
    """(lat, lng) → (x, y) pixels in the map area, the bounding box centred in it."""

    def __init__(self, points: Sequence[tuple[float, float]]) -> None:
        lats, lngs = [p[0] for p in points], [p[1] for p in points]
        self.mid_lat = (min(lats) + max(lats)) / 2
        self.mid_lng = (min(lngs) + max(lngs)) / 2
        self.shrink = math.cos(math.radians(self.mid_lat))
        width_km = max((max(lngs) - min(lngs)) * self.shrink * KM_PER_DEGREE, MIN_EXTENT_KM)
        height_km = max((max(lats) - min(lats)) * KM_PER_DEGREE, MIN_EXTENT_KM)
        self.area_width = WIDTH - 2 * PADDING
        area_height = HEIGHT - HEADER - FOOTER - 2 * PADDING
        self.px_per_km = min(self.area_width / width_km, area_height / height_km)
        self.middle = (WIDTH / 2, HEADER + PADDING + area_height / 2)

    def __call__(self, lat: float, lng: float) -> tuple[float, float]:
        east_km = (lng - self.mid_lng) * self.shrink * KM_PER_DEGREE
        north_km = (lat - self.mid_lat) * KM_PER_DEGREE
        return (
            self.middle[0] + east_km * self.px_per_km,
            self.middle[1] - north_km * self.px_per_km,
        )


def _n(value: float) -> str:
    return f"{value:.1f}"


# What XML 1.0 forbids in a document (ElementTree writes it as is, and no viewer then reads
# the map): control characters other than tab and newlines, and U+FFFE, U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml(value: object) -> str:
    """`value` as text an XML document may hold: a name pasted with a control character in
    it (a backspace from a spreadsheet) shows U+FFFD there."""
    return _NOT_XML.sub("\ufffd", str(value))


def _add(parent: ET.Element, tag: str, text: str | None = None, **attributes: object) -> ET.Element:
    """A child element; `class_` and `font_size` style names become `class`, `font-size`."""
    element = ET.SubElement(
        parent, tag, {k.rstrip("_").replace("_", "-"): _xml(v) for k, v in attributes.items()}
    )
    if text is not None:
        element.text = _xml(text)
    return element


def _free_spot(x: float, y: float, taken: list[tuple[float, float]]) -> tuple[float, float]:
    """Where a marker at (x, y) does not cover one drawn already: stops at one place (a
    pickup and a delivery in the same village) are fanned out around it."""
    for attempt in range(24):
        angle = attempt * math.pi / 3
        distance = 0 if attempt == 0 else 2 * RADIUS * (1 + (attempt - 1) // 6)
        spot = (x + distance * math.cos(angle), y - distance * math.sin(angle))
        if all(math.dist(spot, other) >= 2 * RADIUS for other in taken):
            return spot
    return x, y  # pragma: no cover - 24 stops at one place


def _stop_marker(
    parent: ET.Element, stop: MapStop, at: tuple[float, float], spot: tuple[float, float]
) -> None:
    pickup = stop.kind == StopKind.PICKUP
    group = _add(
        parent,
        "g",
        class_=f"stop-marker stop-{stop.kind}",
        data_sequence=stop.sequence,
        data_kind=stop.kind,
    )
    if spot != at:  # fanned out: a leader line to where the stop really is
        _add(
            group,
            "line",
            x1=_n(at[0]),
            y1=_n(at[1]),
            x2=_n(spot[0]),
            y2=_n(spot[1]),
            stroke=PATH_COLOUR,
            stroke_width=1,
        )
    colour = PICKUP_COLOUR if pickup else DELIVERY_COLOUR
    # Pickups solid, deliveries a ring: told apart in black-and-white print too.
    _add(
        group,
        "circle",
        cx=_n(spot[0]),
        cy=_n(spot[1]),
        r=RADIUS,
        fill=colour if pickup else "#ffffff",
        stroke=colour,
        stroke_width=3,
    )
    _add(
        group,
        "text",
        str(stop.sequence),
        x=_n(spot[0]),
        y=_n(spot[1] + 4),
        text_anchor="middle",
        font_size=12,
        font_weight="bold",
        fill="#ffffff" if pickup else colour,
    )


def _center_marker(parent: ET.Element, x: float, y: float, class_: str) -> None:
    side = 2 * RADIUS
    _add(
        parent,
        "rect",
        class_=class_,
        x=_n(x - side / 2),
        y=_n(y - side / 2),
        width=side,
        height=side,
        fill=CENTER_COLOUR,
        stroke="#ffffff",
        stroke_width=2,
    )


def _path(svg: ET.Element, points: list[tuple[float, float]]) -> None:
    """The road in visiting order, with an arrowhead mid-way along each long enough leg."""
    group = _add(svg, "g", class_="route-path")
    _add(
        group,
        "polyline",
        points=" ".join(f"{_n(x)},{_n(y)}" for x, y in points),
        fill="none",
        stroke=PATH_COLOUR,
        stroke_width=2.5,
        stroke_linejoin="round",
    )
    for (x1, y1), (x2, y2) in itertools.pairwise(points):
        if math.dist((x1, y1), (x2, y2)) < 4 * RADIUS:
            continue
        angle = math.degrees(math.atan2(y2 - y1, x2 - x1))
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        _add(
            group,
            "polygon",
            points="-6,-5 6,0 -6,5",
            fill=PATH_COLOUR,
            transform=f"translate({_n(mx)} {_n(my)}) rotate({_n(angle)})",
        )


def _scale_bar(svg: ET.Element, px_per_km: float, area_width: float) -> None:
    """The longest round figure of kilometres that fits in a quarter of the map's width."""
    fitting = [km for km in SCALE_STEPS_KM if km * px_per_km <= area_width / 4]
    km = fitting[-1] if fitting else SCALE_STEPS_KM[0]
    length = km * px_per_km
    x2, y = WIDTH - PADDING, HEIGHT - FOOTER / 2
    x1 = x2 - length
    group = _add(svg, "g", class_="scale-bar", data_km=f"{km:g}")
    _add(
        group,
        "path",
        d=f"M{_n(x1)},{_n(y - 5)} V{_n(y)} H{_n(x2)} V{_n(y - 5)}",
        fill="none",
        stroke="#212121",
        stroke_width=2,
    )
    _add(
        group,
        "text",
        f"{km:g} km",
        x=_n((x1 + x2) / 2),
        y=_n(y - 9),
        text_anchor="middle",
        font_size=12,
        fill="#212121",
    )


def _legend(svg: ET.Element, center_name: str) -> None:
    group = _add(svg, "g", class_="legend")
    y = HEIGHT - FOOTER / 2
    x = PADDING
    _center_marker(group, x, y, "legend-center")
    _add(group, "text", f"Service center {center_name}", x=x + 18, y=y + 4, font_size=12)
    x += 18 + 7 * len("Service center ") + 13 * len(center_name) + 24  # CJK glyphs are wider
    for kind, label in ((StopKind.PICKUP, "Pickup"), (StopKind.DELIVERY, "Delivery")):
        pickup = kind == StopKind.PICKUP
        colour = PICKUP_COLOUR if pickup else DELIVERY_COLOUR
        _add(
            group,
            "circle",
            class_=f"legend-{kind}",
            cx=x,
            cy=y,
            r=RADIUS - 3,
            fill=colour if pickup else "#ffffff",
            stroke=colour,
            stroke_width=3,
        )
        _add(group, "text", label, x=x + 16, y=y + 4, font_size=12)
        x += 100


def draw_route_map(plan: RouteMap) -> str:
    """The route as an SVG document: the center (a square), the road center → stops in
    order → center (a polyline with arrowheads), each stop a numbered circle (pickups
    solid green, deliveries a blue ring), a legend, a scale bar and a title."""
    center = (plan.center_lat, plan.center_lng)
    project = _Projection([center, *((s.lat, s.lng) for s in plan.stops)])
    svg = ET.Element(
        "svg",
        {
            "xmlns": SVG_NS,
            "width": str(WIDTH),
            "height": str(HEIGHT),
            "viewBox": f"0 0 {WIDTH} {HEIGHT}",
            "font-family": FONT,
        },
    )
    _add(svg, "title", plan.title)
    _add(svg, "rect", width=WIDTH, height=HEIGHT, fill="#ffffff")
    _add(
        svg,
        "text",
        plan.title,
        class_="map-title",
        x=PADDING,
        y=26,
        font_size=16,
        font_weight="bold",
        fill="#212121",
    )
    _add(
        svg,
        "text",
        f"{plan.center_name} · {len(plan.stops)} stops",
        x=PADDING,
        y=46,
        font_size=12,
        fill=PATH_COLOUR,
    )
    home = project(*center)
    places = [project(stop.lat, stop.lng) for stop in plan.stops]
    if places:
        _path(svg, [home, *places, home])
    _center_marker(svg, *home, class_="center-marker")
    taken = [home]
    for stop, at in zip(plan.stops, places, strict=True):
        spot = _free_spot(*at, taken)
        taken.append(spot)
        _stop_marker(svg, stop, at, spot)
    _legend(svg, plan.center_name)
    _scale_bar(svg, project.px_per_km, project.area_width)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(svg, encoding="unicode")
