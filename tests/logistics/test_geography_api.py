import pytest

from tests.factories import ServiceCenterFactory, VillageFactory

pytestmark = pytest.mark.django_db


def test_villages_are_public_paginated_and_searchable(api, django_assert_max_num_queries):
    north = ServiceCenterFactory(name="北山服务中心")
    VillageFactory(name="李家村", service_center=north)
    VillageFactory(name="李家湾")
    VillageFactory(name="王庄")

    with django_assert_max_num_queries(2):  # count + page, centers joined
        response = api.get("/api/v1/villages/", {"search": "李家"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 2
    assert [v["name"] for v in body["results"]] == ["李家村", "李家湾"]
    first = body["results"][0]
    assert set(first) >= {"id", "name", "county", "lat", "lng", "service_center"}
    assert first["service_center"] == north.pk
    assert first["service_center_name"] == "北山服务中心"


def test_a_village_filter_left_empty_filters_nothing(api):
    VillageFactory.create_batch(3)
    every = api.get("/api/v1/villages/").json()
    assert every["count"] == 3
    assert api.get("/api/v1/villages/", {"service_center": "", "search": ""}).json() == every


def test_villages_filter_by_center_and_page_size_is_capped(api):
    center = ServiceCenterFactory()
    VillageFactory.create_batch(3, service_center=center)
    VillageFactory()
    response = api.get("/api/v1/villages/", {"service_center": center.pk, "page_size": 2})
    assert response.json()["count"] == 3
    assert len(response.json()["results"]) == 2
    assert response.json()["next"] is not None

    VillageFactory.create_batch(101, service_center=center)
    response = api.get("/api/v1/villages/", {"page_size": 500})
    assert len(response.json()["results"]) == 100


def test_bad_filter_value_is_400_not_500(api):
    response = api.get("/api/v1/villages/", {"service_center": "abc"})
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert response.json()["errors"][0]["field"] == "service_center"


def test_service_centers_list_and_detail(api):
    center = ServiceCenterFactory(name="柳河服务中心")
    listing = api.get("/api/v1/service-centers/")
    assert listing.status_code == 200
    assert [c["name"] for c in listing.json()["results"]] == ["柳河服务中心"]
    detail = api.get(f"/api/v1/service-centers/{center.pk}/")
    assert detail.status_code == 200
    assert {k: detail.json()[k] for k in ("id", "name", "lat", "lng")} == {
        "id": center.pk,
        "name": "柳河服务中心",
        "lat": "30.250000",
        "lng": "119.700000",
    }


@pytest.mark.parametrize("page_size", ["abc", "0", "-1", "2.5", "١٢", " 3"])
def test_a_page_size_that_is_no_whole_number_from_1_is_400_naming_it(api, page_size):
    VillageFactory()
    response = api.get("/api/v1/villages/", {"page_size": page_size})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert [(e["field"], e["code"]) for e in body["errors"]] == [("page_size", "invalid")]


def test_an_empty_page_size_reads_as_the_default(api):
    VillageFactory.create_batch(21)
    response = api.get("/api/v1/villages/", {"page_size": ""})
    assert (response.status_code, len(response.json()["results"])) == (200, 20)


def test_the_schema_gives_page_and_page_size_as_whole_numbers_from_1(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    parameters = schema["paths"]["/api/v1/villages/"]["get"]["parameters"]
    paging = {p["name"]: p["schema"] for p in parameters if p["name"] in ("page", "page_size")}
    assert paging == {
        "page": {"type": "integer", "minimum": 1},
        "page_size": {"type": "integer", "minimum": 1},
    }


def test_villages_of_a_center_that_does_not_exist_are_none_not_400(api):
    village = VillageFactory()
    answers = {
        center: api.get("/api/v1/villages/", {"service_center": center})
        for center in (village.service_center_id, village.service_center_id + 1000, 2**63 - 1)
    }
    assert [(a.status_code, a.json()["count"]) for a in answers.values()] == [
        (200, 1),
        (200, 0),
        (200, 0),
    ]
    for center in ("0", "1.5", str(2**63)):
        response = api.get("/api/v1/villages/", {"service_center": center})
        assert response.status_code == 400, center
        assert response.json()["errors"][0]["field"] == "service_center"
