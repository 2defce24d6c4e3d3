"""Travel matrices: how long and how far from every location to every other.

The solver asks a `MatrixProvider` for the matrices of the locations it needs (deduplicated,
in a fixed order) and hands them to the engine as they are. Two providers: a great-circle
estimate (no network, good enough for planning a county's day when no road router runs) and
an OSRM-compatible HTTP `table` service for road distances.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit
from urllib.request import urlopen

import numpy as np  # pyvroom depends on numpy, so it is always there with the engine

from logistics.routing.problem import Location

EARTH_RADIUS_M = 6_371_000.0
# OSRM answers null for pairs it cannot route between: they become a trip longer than any
# shift, so the engine leaves such a stop unassigned instead of the whole plan failing.
UNREACHABLE_S = 7 * 24 * 3600
UNREACHABLE_M = 10_000_000


class MatrixError(Exception):
    """The matrix service failed or answered something we cannot use."""


@dataclass(frozen=True)
class Matrices:
    durations_s: list[list[int]]  # [from][to], whole seconds
    distances_m: list[list[int]]  # [from][to], whole metres


class MatrixProvider(Protocol):
    def matrices(self, locations: Sequence[Location]) -> Matrices: ...


class GreatCircleMatrix:
    """Haversine distance times a detour factor (roads are not straight), driven at a
    constant speed. Symmetric, zero on the diagonal, rounded to whole metres and seconds."""

    def __init__(self, detour_factor: float = 1.3, speed_kmh: float = 40.0) -> None:
        if detour_factor < 1.0 or speed_kmh <= 0:
            raise ValueError("detour_factor must be ≥ 1 and speed_kmh > 0")
        self.detour_factor = detour_factor
        self.speed_kmh = speed_kmh

    def matrices(self, locations: Sequence[Location]) -> Matrices:
        if not locations:
            return Matrices(durations_s=[], distances_m=[])
        lat = np.radians([x.lat for x in locations])
        lng = np.radians([x.lng for x in locations])
        dlat = lat[:, None] - lat[None, :]
        dlng = lng[:, None] - lng[None, :]
        a = (
            np.sin(dlat / 2) ** 2
            + np.cos(lat)[:, None] * np.cos(lat)[None, :] * np.sin(dlng / 2) ** 2
        )
        metres = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
        metres *= self.detour_factor
        seconds = metres / (self.speed_kmh / 3.6)
        return Matrices(
            durations_s=np.rint(seconds).astype(np.int64).tolist(),
            distances_m=np.rint(metres).astype(np.int64).tolist(),
        )


class OsrmMatrix:
    """Road durations and distances from an OSRM-compatible `table` service.

    Large sets are asked for in blocks of at most `block` × `block` (osrm-routed refuses
    tables past its --max-table-size, 100 by default), each request carrying only the
    coordinates of its block, so URLs stay short."""

    def __init__(
        self, base_url: str, timeout: float = 10.0, profile: str = "driving", block: int = 100
    ) -> None:
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        if block < 1:
            raise ValueError("block must be ≥ 1")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.profile = profile
        self.block = block

    def matrices(self, locations: Sequence[Location]) -> Matrices:
        n = len(locations)
        durations = [[0] * n for _ in range(n)]
        distances = [[0] * n for _ in range(n)]
        blocks = [range(i, min(i + self.block, n)) for i in range(0, n, self.block)]
        for sources in blocks:
            for destinations in blocks:
                self._fill(locations, sources, destinations, durations, distances)
        return Matrices(durations_s=durations, distances_m=distances)

    def _fill(
        self,
        locations: Sequence[Location],
        sources: range,
        destinations: range,
        durations: list[list[int]],
        distances: list[list[int]],
    ) -> None:
        same = sources == destinations
        indices = list(sources) if same else [*sources, *destinations]
        coordinates = ";".join(f"{locations[i].lng:.6f},{locations[i].lat:.6f}" for i in indices)
        query = "annotations=duration,distance"
        if not same:
            query += "&sources=" + ";".join(str(k) for k in range(len(sources)))
            query += "&destinations=" + ";".join(str(k) for k in range(len(sources), len(indices)))
        answer = self._get(f"{self.base_url}/table/v1/{self.profile}/{coordinates}?{query}")
        for key, target, unreachable in (
            ("durations", durations, UNREACHABLE_S),
            ("distances", distances, UNREACHABLE_M),
        ):
            rows = answer.get(key)
            try:
                for row, i in zip(rows, sources, strict=True):  # type: ignore[arg-type]
                    for value, j in zip(row, destinations, strict=True):
                        target[i][j] = unreachable if value is None else round(value)
            except (TypeError, ValueError) as error:  # missing, ragged or non-numeric
                raise MatrixError(f"matrix service answered no usable {key!r}") from error

    def _get(self, url: str) -> dict:
        try:
            # The scheme is checked in __init__: only http(s) reaches here.
            with urlopen(url, timeout=self.timeout) as response:  # noqa: S310
                answer = json.load(response)
        except (OSError, ValueError) as error:  # URLError, HTTPError, timeouts, bad JSON
            raise MatrixError(f"matrix service failed: {error}") from error
        if not isinstance(answer, dict) or answer.get("code") != "Ok":
            code = answer.get("code") if isinstance(answer, dict) else None
            raise MatrixError(f"matrix service answered code {code!r}")
        return answer
