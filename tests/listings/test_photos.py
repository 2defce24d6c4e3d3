"""Listing photos: upload checks and re-encoding, the 8-photo limit under concurrency, and
the thumbnail made by a real Celery worker, all against real PostgreSQL, Redis and files."""

import shutil
import threading
import time
from datetime import timedelta
from decimal import Decimal
from io import BytesIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler
from django.db import connection, connections, transaction
from django.utils import timezone
from PIL import ExifTags, Image, ImageCms

from listings import errors, photos, services
from listings.models import Category, Listing, ListingPhoto, ListingStatus
from listings.tasks import make_listing_photo_thumbnail, make_overdue_listing_photo_thumbnails
from marketplace.celery import app as celery_app
from marketplace.exceptions import DomainError
from tests.factories import BuyerFactory, FarmerFactory

MAKE = "FarmCam 9000"
GPS = {
    ExifTags.GPS.GPSLatitudeRef: "N",
    ExifTags.GPS.GPSLatitude: (30.0, 15.0, 7.0),
    ExifTags.GPS.GPSLongitudeRef: "E",
    ExifTags.GPS.GPSLongitude: (119.0, 42.0, 3.0),
}
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)
SRGB_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def url(listing: Listing) -> str:
    return f"/api/v1/listings/{listing.pk}/photos/"


def listing_folder(listing: Listing) -> Path:
    return Path(settings.MEDIA_ROOT) / "listings" / str(listing.pk)


def stored_files(listing: Listing) -> list[str]:
    folder = listing_folder(listing)
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def image_file(
    fmt: str,
    size: tuple[int, int] = (64, 48),
    mode: str = "RGB",
    color=BLUE,
    **save_options,
) -> SimpleUploadedFile:
    buffer = BytesIO()
    Image.new(mode, size, color).save(buffer, fmt, **save_options)
    extension = {"JPEG": "jpg"}.get(fmt, fmt.lower())
    return SimpleUploadedFile(
        f"photo.{extension}", buffer.getvalue(), content_type=f"image/{extension}"
    )


def phone_photo() -> SimpleUploadedFile:
    """A 4096×3072 camera JPEG held sideways (EXIF orientation 6: turn 90° clockwise to
    view), red in its top-left corner, with the camera make, the farm's GPS position, a
    comment and a colour profile."""
    image = Image.new("RGB", (4096, 3072), BLUE)
    image.paste(RED, (0, 0, 1024, 768))
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = MAKE
    exif[ExifTags.Base.Orientation] = 6
    exif.get_ifd(ExifTags.IFD.GPSInfo).update(GPS)
    buffer = BytesIO()
    image.save(
        buffer, "JPEG", exif=exif, comment=b"shot at the Wang farm", icc_profile=SRGB_PROFILE
    )
    return SimpleUploadedFile("IMG_0001.jpg", buffer.getvalue(), content_type="image/jpeg")


def make_listing() -> Listing:
    return services.listing_create(
        farmer=FarmerFactory(),
        category=Category.objects.get(slug="vegetables"),
        title="Bok choy",
        unit="kg",
        price=Decimal("3.50"),
        quantity_available=Decimal("10"),
        harvest_date=timezone.localdate(),
        shelf_life_days=7,
    )


@pytest.fixture
def listing():
    listing = make_listing()
    shutil.rmtree(listing_folder(listing), ignore_errors=True)  # left by an aborted run
    yield listing
    shutil.rmtree(listing_folder(listing), ignore_errors=True)


@pytest.fixture
def owner(listing, client_for):
    return client_for(listing.farmer)


def assert_problem(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == code


def assert_nothing_stored(listing: Listing) -> None:
    assert not ListingPhoto.objects.filter(listing=listing).exists()
    assert stored_files(listing) == []


@pytest.mark.django_db
class TestUpload:
    def test_a_camera_jpeg_is_stored_upright_without_any_metadata(
        self, listing, owner, django_capture_on_commit_callbacks
    ):
        upload = phone_photo()
        with Image.open(BytesIO(upload.read())) as source:  # the test input really has it all
            assert source.getexif()[ExifTags.Base.Make] == MAKE
            assert source.getexif().get_ifd(ExifTags.IFD.GPSInfo)
            assert source.info["comment"] == b"shot at the Wang farm"
            assert source.info["icc_profile"] == SRGB_PROFILE
        upload.seek(0)

        with django_capture_on_commit_callbacks() as callbacks:
            response = owner.post(url(listing), {"image": upload}, format="multipart")

        assert response.status_code == 201, response.content
        photo = ListingPhoto.objects.get(listing=listing)
        assert response.json() == {
            "id": photo.pk,
            "url": f"/media/{photo.image.name}",
            "thumbnail_url": None,
            "width": 1536,
            "height": 2048,
        }
        assert len(callbacks) == 1  # the thumbnail task, enqueued once the row is committed
        assert photo.image.name.startswith(f"listings/{listing.pk}/")
        assert "IMG_0001" not in photo.image.name
        assert stored_files(listing) == [Path(photo.image.name).name]
        raw = Path(photo.image.path).read_bytes()
        assert b"Exif" not in raw
        assert MAKE.encode() not in raw
        assert b"Wang farm" not in raw
        with Image.open(photo.image.path) as stored:
            assert (stored.format, stored.mode, stored.size) == ("JPEG", "RGB", (1536, 2048))
            assert not stored.getexif()
            assert not {"exif", "comment", "icc_profile", "xmp"} & set(stored.info)
            # Turned clockwise: the red top-left corner is now top-right.
            assert_close(stored.getpixel((1500, 20)), RED)
            assert_close(stored.getpixel((20, 20)), BLUE)

    def test_a_png_with_transparency_is_flattened_onto_white(self, listing, owner):
        upload = image_file("PNG", size=(300, 200), mode="RGBA", color=(0, 128, 0, 0))
        response = owner.post(url(listing), {"image": upload}, format="multipart")
        assert response.status_code == 201, response.content
        assert (response.json()["width"], response.json()["height"]) == (300, 200)
        photo = ListingPhoto.objects.get(listing=listing)
        assert photo.image.name.endswith(".jpg")
        with Image.open(photo.image.path) as stored:
            assert (stored.format, stored.mode) == ("JPEG", "RGB")
            assert_close(stored.getpixel((150, 100)), WHITE)

    @pytest.mark.parametrize("mode", ["RGB", "RGBA"])
    def test_a_large_png_is_shrunk_before_it_is_turned_and_flattened(self, listing, owner, mode):
        """A 6000×4400 PNG (no JPEG decoder shrinks it) held sideways: reduced first, then
        turned upright and, where transparent, flattened onto white, with no dark seam
        where the transparent half meets the red one (its hidden colour is black, which
        averaged without its alpha would darken the seam)."""
        image = Image.new(mode, (6000, 4400), (0, 0, 0, 0) if mode == "RGBA" else WHITE)
        image.paste(RED, (0, 0, 3001, 4400))  # its edge inside a block the reduce averages
        exif = Image.Exif()
        exif[ExifTags.Base.Orientation] = 6
        buffer = BytesIO()
        image.save(buffer, "PNG", exif=exif, compress_level=1)
        upload = SimpleUploadedFile("big.png", buffer.getvalue(), content_type="image/png")

        response = owner.post(url(listing), {"image": upload}, format="multipart")

        assert response.status_code == 201, response.content
        assert (response.json()["width"], response.json()["height"]) == (1502, 2048)
        with Image.open(ListingPhoto.objects.get(listing=listing).image.path) as stored:
            # turned clockwise: the red left half is now the top half
            assert_close(stored.getpixel((750, 20)), RED)
            assert_close(stored.getpixel((750, 2030)), WHITE)
            # red or white, or between: full red either way, never darkened
            seam = [stored.getpixel((750, y)) for y in range(1000, 1048)]
            assert min(red for red, _, _ in seam) >= 210, seam  # (JPEG's chroma: 219)

    def test_a_webp_is_accepted(self, listing, owner):
        response = owner.post(
            url(listing), {"image": image_file("WEBP", size=(120, 90))}, format="multipart"
        )
        assert response.status_code == 201, response.content
        assert (response.json()["width"], response.json()["height"]) == (120, 90)

    def test_a_text_file_named_jpg_is_not_an_image(self, listing, owner):
        upload = SimpleUploadedFile("photo.jpg", b"not a picture " * 50, "image/jpeg")
        response = owner.post(url(listing), {"image": upload}, format="multipart")
        assert_problem(response, 400, errors.INVALID_IMAGE)
        assert_nothing_stored(listing)

    def test_a_truncated_jpeg_is_not_an_image(self, listing, owner):
        whole = image_file("JPEG", size=(640, 480)).read()
        upload = SimpleUploadedFile("photo.jpg", whole[: len(whole) // 2], "image/jpeg")
        response = owner.post(url(listing), {"image": upload}, format="multipart")
        assert_problem(response, 400, errors.INVALID_IMAGE)
        assert_nothing_stored(listing)

    def test_a_gif_is_an_unsupported_type(self, listing, owner):
        response = owner.post(url(listing), {"image": image_file("GIF")}, format="multipart")
        assert_problem(response, 400, errors.UNSUPPORTED_IMAGE_TYPE)
        assert response.json()["format"] == "GIF"
        assert_nothing_stored(listing)

    def test_a_file_over_the_byte_limit_is_refused(self, listing, owner, settings):
        upload = image_file("JPEG", size=(640, 480))
        settings.LISTING_PHOTO_MAX_BYTES = upload.size - 1
        response = owner.post(url(listing), {"image": upload}, format="multipart")
        assert_problem(response, 400, errors.IMAGE_TOO_LARGE)
        assert_nothing_stored(listing)

    def test_the_byte_limit_is_checked_before_decoding(self, listing, owner, settings):
        settings.LISTING_PHOTO_MAX_BYTES = 1000
        upload = SimpleUploadedFile("photo.jpg", b"x" * 1001, "image/jpeg")
        response = owner.post(url(listing), {"image": upload}, format="multipart")
        assert_problem(response, 400, errors.IMAGE_TOO_LARGE)  # not invalid_image

    @pytest.mark.parametrize("key", [None, "photo-big-1"])
    def test_a_body_too_large_for_any_photo_is_refused_before_it_is_read(
        self, listing, owner, settings, monkeypatch, key
    ):
        """Django limits a body's form fields, not its files: a file of any size was read
        whole (to a temporary file, or hashed first under an Idempotency-Key) before its
        size was checked, so one farmer's upload of gigabytes filled the server's disk. A
        body larger than the largest photo and the fields around it is refused from its
        Content-Length, as any body too large is."""
        settings.LISTING_PHOTO_MAX_BYTES = 1_000
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
        received = []
        for handler in (MemoryFileUploadHandler, TemporaryFileUploadHandler):
            monkeypatch.setattr(
                handler, "receive_data_chunk", lambda self, raw, start: received.append(raw)
            )
        upload = SimpleUploadedFile("photo.jpg", b"x" * 50_000, "image/jpeg")
        headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
        response = owner.post(url(listing), {"image": upload}, format="multipart", **headers)
        assert_problem(response, 413, "request_too_large")
        assert received == []
        assert_nothing_stored(listing)

    def test_too_many_pixels_is_refused_from_the_header(self, listing, owner):
        # 42 megapixels in a few KB: a small decompression bomb.
        upload = image_file("PNG", size=(7000, 6000), mode="1", color=0)
        assert upload.size < 100_000
        response = owner.post(url(listing), {"image": upload}, format="multipart")
        assert_problem(response, 400, errors.IMAGE_TOO_LARGE)
        assert_nothing_stored(listing)

    def test_the_image_field_is_required(self, listing, owner):
        response = owner.post(url(listing), {}, format="multipart")
        assert_problem(response, 400, "validation_error")
        assert response.json()["errors"][0]["field"] == "image"
        assert_nothing_stored(listing)

    def test_a_ninth_photo_is_refused(self, listing, owner):
        for _ in range(photos.MAX_PHOTOS_PER_LISTING):
            photos.listing_photo_add(listing=listing, upload=image_file("JPEG"))
        before = stored_files(listing)
        assert len(before) == 8

        response = owner.post(url(listing), {"image": image_file("JPEG")}, format="multipart")

        assert_problem(response, 409, errors.TOO_MANY_PHOTOS)
        assert ListingPhoto.objects.filter(listing=listing).count() == 8
        assert stored_files(listing) == before

    def test_an_archived_listing_takes_no_photos(self, listing, owner):
        services.listing_set_status(listing=listing, status=ListingStatus.ARCHIVED)
        response = owner.post(url(listing), {"image": image_file("JPEG")}, format="multipart")
        assert_problem(response, 409, errors.LISTING_ARCHIVED)
        assert_nothing_stored(listing)

    def test_a_paused_listing_takes_photos(self, listing, owner):
        services.listing_set_status(listing=listing, status=ListingStatus.PAUSED)
        response = owner.post(url(listing), {"image": image_file("JPEG")}, format="multipart")
        assert response.status_code == 201, response.content


@pytest.mark.django_db
class TestRemove:
    def test_a_removed_photo_takes_its_files_and_frees_its_slot(
        self, listing, owner, django_capture_on_commit_callbacks
    ):
        kept, *rest = [
            photos.listing_photo_add(listing=listing, upload=image_file("JPEG"))
            for _ in range(photos.MAX_PHOTOS_PER_LISTING)
        ]
        gone = rest[0]
        ListingPhoto.objects.filter(pk=gone.pk).update(thumbnail=f"{gone.image.name[:-4]}-t.jpg")
        Path(gone.image.path[:-4] + "-t.jpg").write_bytes(b"thumbnail")
        assert len(stored_files(listing)) == 9

        with django_capture_on_commit_callbacks(execute=True):
            response = owner.delete(f"{url(listing)}{gone.pk}/")

        assert response.status_code == 204
        assert not ListingPhoto.objects.filter(pk=gone.pk).exists()
        left = ListingPhoto.objects.filter(listing=listing)
        assert sorted(stored_files(listing)) == sorted(Path(p.image.name).name for p in left)
        assert owner.delete(f"{url(listing)}{gone.pk}/").status_code == 404  # a retry
        more = owner.post(url(listing), {"image": image_file("JPEG")}, format="multipart")
        assert more.status_code == 201
        assert ListingPhoto.objects.filter(listing=listing).count() == 8
        assert ListingPhoto.objects.filter(pk=kept.pk).exists()

    def test_only_its_owner_removes_a_photo_and_not_from_an_archived_listing(
        self, listing, owner, client_for, api
    ):
        photo = photos.listing_photo_add(listing=listing, upload=image_file("JPEG"))
        other = make_listing()
        answers = [
            client_for(FarmerFactory()).delete(f"{url(listing)}{photo.pk}/"),
            client_for(BuyerFactory()).delete(f"{url(listing)}{photo.pk}/"),
            api.delete(f"{url(listing)}{photo.pk}/"),
            client_for(other.farmer).delete(f"{url(other)}{photo.pk}/"),  # not on their listing
        ]
        services.listing_set_status(listing=listing, status=ListingStatus.ARCHIVED)
        answers.append(owner.delete(f"{url(listing)}{photo.pk}/"))
        assert [(a.status_code, a.json()["code"]) for a in answers] == [
            (404, "not_found"),
            (403, "permission_denied"),
            (401, "not_authenticated"),
            (404, "not_found"),
            (409, errors.LISTING_ARCHIVED),
        ]
        assert ListingPhoto.objects.filter(pk=photo.pk).exists()
        assert stored_files(listing) == [Path(photo.image.name).name]


@pytest.mark.django_db
class TestWhoMayUpload:
    def test_another_farmer_gets_404(self, listing, client_for):
        client = client_for(FarmerFactory())
        response = client.post(url(listing), {"image": image_file("JPEG")}, format="multipart")
        assert_problem(response, 404, "not_found")
        assert_nothing_stored(listing)

    def test_a_buyer_gets_403(self, listing, client_for):
        client = client_for(BuyerFactory())
        response = client.post(url(listing), {"image": image_file("JPEG")}, format="multipart")
        assert_problem(response, 403, "permission_denied")
        assert_nothing_stored(listing)

    def test_anonymous_gets_401(self, listing, api):
        response = api.post(url(listing), {"image": image_file("JPEG")}, format="multipart")
        assert_problem(response, 401, "not_authenticated")
        assert_nothing_stored(listing)

    def test_a_missing_listing_is_404(self, listing, owner):
        response = owner.post(
            f"/api/v1/listings/{listing.pk + 1000}/photos/",
            {"image": image_file("JPEG")},
            format="multipart",
        )
        assert_problem(response, 404, "not_found")


def assert_close(pixel, expected, tolerance: int = 12) -> None:
    """JPEG is lossy: a flat colour comes back within a few levels."""
    assert all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True)), pixel


def wait_for_thumbnails(listing: Listing, count: int, timeout: float = 20) -> list[ListingPhoto]:
    deadline = time.monotonic() + timeout
    while True:
        done = list(ListingPhoto.objects.filter(listing=listing).exclude(thumbnail=""))
        if len(done) >= count or time.monotonic() > deadline:
            return done
        time.sleep(0.1)


def wait_for_lock_waiters(count: int, timeout: float = 10) -> int:
    """How many other sessions of this database wait for a lock, once `count` do (or at
    the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        with connection.cursor() as cursor:
            # Within a transaction PostgreSQL caches the activity view: take a fresh look.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            (waiting,) = cursor.fetchone()
        if waiting >= count or time.monotonic() > deadline:
            return waiting
        time.sleep(0.05)


@pytest.mark.django_db(transaction=True)
class TestWithTheWorker:
    def test_the_worker_makes_the_thumbnail_and_the_api_shows_it(
        self, celery_worker, listing, owner, api
    ):
        upload = image_file("JPEG", size=(1600, 1200))
        response = owner.post(url(listing), {"image": upload}, format="multipart")
        assert response.status_code == 201, response.content
        assert response.json()["thumbnail_url"] is None

        done = wait_for_thumbnails(listing, 1)

        assert len(done) == 1, f"no thumbnail after 20 s; see {celery_worker.log_path}"
        photo = done[0]
        assert photo.thumbnail.name == f"{photo.image.name.removesuffix('.jpg')}-thumb.jpg"
        with Image.open(photo.thumbnail.path) as thumbnail:
            assert (thumbnail.format, thumbnail.size) == ("JPEG", (320, 240))
        thumbnail_url = f"/media/{photo.thumbnail.name}"

        detail = api.get(f"/api/v1/listings/{listing.pk}/").json()
        assert detail["photos"] == [
            {
                "id": photo.pk,
                "url": f"/media/{photo.image.name}",
                "thumbnail_url": thumbnail_url,
                "width": 1600,
                "height": 1200,
            }
        ]
        page = api.get("/api/v1/listings/", {"farmer": listing.farmer_id}).json()
        assert [(row["id"], row["thumbnail"]) for row in page["results"]] == [
            (listing.pk, thumbnail_url)
        ]

    def test_a_second_run_of_the_task_changes_nothing(self, celery_worker, listing, owner):
        owner.post(url(listing), {"image": image_file("JPEG", size=(800, 600))}, format="multipart")
        (photo,) = wait_for_thumbnails(listing, 1)
        files = stored_files(listing)

        photos.listing_photo_make_thumbnail(photo=ListingPhoto.objects.get(pk=photo.pk))
        # A duplicate that loaded the row before the first run saved: it renders, then
        # finds the thumbnail under the row lock and throws its own file away.
        stale = ListingPhoto.objects.get(pk=photo.pk)
        stale.thumbnail = ""
        kept = photos.listing_photo_make_thumbnail(photo=stale)

        assert kept.thumbnail == photo.thumbnail
        assert ListingPhoto.objects.get(pk=photo.pk).thumbnail == photo.thumbnail
        assert stored_files(listing) == files

    def test_two_concurrent_uploads_cannot_make_nine(self, celery_worker, listing):
        for _ in range(photos.MAX_PHOTOS_PER_LISTING - 1):
            photos.listing_photo_add(listing=listing, upload=image_file("JPEG"))
        assert len(wait_for_thumbnails(listing, 7)) == 7  # the worker is idle again
        outcomes: list[str] = []

        def upload() -> None:
            try:
                photos.listing_photo_add(listing=listing, upload=image_file("JPEG"))
                outcomes.append("added")
            except DomainError as error:
                outcomes.append(error.code)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=upload) for _ in range(2)]
        # Hold the listing's row lock until both uploads have counted 7 without it and
        # wait for it: the worst interleaving, every time.
        with transaction.atomic():
            Listing.objects.select_for_update().get(pk=listing.pk)
            for thread in threads:
                thread.start()
            waiting = wait_for_lock_waiters(2)
        for thread in threads:
            thread.join()

        assert waiting == 2, "the uploads did not wait for the listing's row lock"
        assert sorted(outcomes) == ["added", errors.TOO_MANY_PHOTOS]
        assert ListingPhoto.objects.filter(listing=listing).count() == 8
        # Let the worker finish the thumbnails before the folder is removed; the refused
        # upload left no file behind.
        assert len(wait_for_thumbnails(listing, 8)) == 8
        assert len(stored_files(listing)) == 16

    def test_the_sweeper_redrives_a_lost_thumbnail(self, celery_worker, listing):
        photo = photos.listing_photo_add(listing=listing, upload=image_file("JPEG"))
        (photo,) = wait_for_thumbnails(listing, 1)
        # As if the task had been lost: no thumbnail, and the photo is long overdue.
        ListingPhoto.objects.filter(pk=photo.pk).update(
            thumbnail="", created_at=timezone.now() - photos.THUMBNAIL_OVERDUE_AFTER * 2
        )
        Path(photo.thumbnail.path).unlink()

        assert make_overdue_listing_photo_thumbnails() == 1

        (redone,) = wait_for_thumbnails(listing, 1)
        assert Path(redone.thumbnail.path).exists()


@pytest.mark.django_db
def test_a_photo_whose_file_is_gone_is_marked_and_no_longer_sent_again(listing):
    gone = photos.listing_photo_add(listing=listing, upload=image_file("JPEG"))
    lost = photos.listing_photo_add(listing=listing, upload=image_file("JPEG"))  # file there
    Path(gone.image.path).unlink()
    overdue = timezone.now() - timedelta(days=3)
    ListingPhoto.objects.filter(pk__in=[gone.pk, lost.pk]).update(created_at=overdue)
    assert make_overdue_listing_photo_thumbnails() == 2

    make_listing_photo_thumbnail(gone.pk)  # no error: nothing to make it from

    gone = ListingPhoto.objects.get(pk=gone.pk)
    assert (gone.thumbnail, gone.thumbnail_failed_at is not None) == ("", True)
    assert make_overdue_listing_photo_thumbnails() == 1  # the other, days overdue, still
    make_listing_photo_thumbnail(lost.pk)
    assert ListingPhoto.objects.get(pk=lost.pk).thumbnail
    assert make_overdue_listing_photo_thumbnails() == 0
    celery_app.control.purge()  # the messages it sent: no worker here


@pytest.mark.django_db
def test_a_photo_whose_file_no_longer_reads_as_an_image_is_marked_and_not_sent_again(listing):
    """A stored file spoiled on disk (cut short, overwritten): decoding it fails the same
    way every time, so the sweeper must not send it every ten minutes for ever, where
    enough such photos fill its batch and the others never get their thumbnails."""
    broken = photos.listing_photo_add(listing=listing, upload=image_file("JPEG"))
    cut_short = photos.listing_photo_add(listing=listing, upload=image_file("JPEG"))
    Path(broken.image.path).write_bytes(b"not an image any more")
    data = Path(cut_short.image.path).read_bytes()
    Path(cut_short.image.path).write_bytes(data[: len(data) // 2])
    overdue = timezone.now() - timedelta(days=3)
    ListingPhoto.objects.filter(pk__in=[broken.pk, cut_short.pk]).update(
        thumbnail="", created_at=overdue
    )

    make_listing_photo_thumbnail(broken.pk)  # no error: it cannot be made
    make_listing_photo_thumbnail(cut_short.pk)

    for photo in ListingPhoto.objects.filter(pk__in=[broken.pk, cut_short.pk]):
        assert (photo.thumbnail, photo.thumbnail_failed_at is not None) == ("", True)
    assert make_overdue_listing_photo_thumbnails() == 0


def noisy_jpeg(megabytes: float) -> bytes:
    """A JPEG of random pixels, so it stays about `megabytes` large after compression."""
    import os  # noqa: PLC0415

    side = int((megabytes * 1024 * 1024 / 3) ** 0.5)
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buffer = BytesIO()
    image.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@pytest.mark.django_db
def test_an_upload_retried_with_its_idempotency_key_is_stored_once(listing, owner):
    """A photo above the in-memory body limit sent twice with one key: the retry
    (which a client encodes with a fresh multipart boundary) replays the first answer."""
    data = noisy_jpeg(7.5)
    assert len(data) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    first = owner.post(
        url(listing),
        {"image": SimpleUploadedFile("a.jpg", data, "image/jpeg")},
        format="multipart",
        HTTP_IDEMPOTENCY_KEY="upload-1",
    )
    retry = owner.post(
        url(listing),
        {"image": SimpleUploadedFile("a.jpg", data, "image/jpeg")},
        format="multipart",
        HTTP_IDEMPOTENCY_KEY="upload-1",
    )
    assert first.status_code == 201, first.content
    assert (retry.status_code, retry["Idempotent-Replayed"]) == (201, "true")
    assert retry.json() == first.json()
    assert ListingPhoto.objects.filter(listing=listing).count() == 1
    other = owner.post(
        url(listing),
        {"image": image_file("PNG")},
        format="multipart",
        HTTP_IDEMPOTENCY_KEY="upload-1",
    )
    assert_problem(other, 422, "idempotency_key_reused")


@pytest.mark.django_db(transaction=True)
def test_a_photo_uploaded_while_the_broker_is_down_is_kept_and_answered_201(
    broker_down, listing, owner
):
    """The photo is committed before its thumbnail's message is sent; the overdue sweeper
    makes the thumbnail if the message is lost. A 500 would have the app upload it again."""

    owner.raise_request_exception = False
    answer = owner.post(url(listing), {"image": phone_photo()}, format="multipart")
    assert answer.status_code == 201, answer.content
    assert list(ListingPhoto.objects.values_list("pk", "thumbnail")) == [(answer.json()["id"], "")]
    deleted = owner.delete(f"{url(listing)}{answer.json()['id']}/")
    assert deleted.status_code == 204, deleted.content
    assert not ListingPhoto.objects.exists()


@pytest.mark.django_db
def test_a_16_bit_grey_png_keeps_its_shades(listing, owner):
    """A 16-bit greyscale PNG (a scanner's, an editing app's) is read as 0 to 65535:
    converted to 8-bit as is, every shade above 255 of 65535 was clipped to white, and the
    photo stored a white page. Its shades are now scaled to 8 bits, and so is the
    thumbnail made from it."""
    row = (16384).to_bytes(2, "little") * 100 + (49152).to_bytes(2, "little") * 100
    image = Image.frombytes("I;16", (200, 100), row * 100)  # a quarter grey, three quarters
    buffer = BytesIO()
    image.save(buffer, "PNG")
    upload = SimpleUploadedFile("scan.png", buffer.getvalue(), content_type="image/png")

    response = owner.post(url(listing), {"image": upload}, format="multipart")

    assert response.status_code == 201, response.content
    with Image.open(ListingPhoto.objects.get(listing=listing).image.path) as stored:
        assert_close(stored.getpixel((50, 50)), (64, 64, 64), tolerance=3)
        assert_close(stored.getpixel((150, 50)), (192, 192, 192), tolerance=3)


@pytest.mark.django_db
def test_a_jpeg_whose_colour_profile_cannot_be_read_is_kept_as_it_is(listing, owner):
    """lcms refuses some broken profiles with an OSError rather than its own error: the
    pixels are kept as they are, as for any broken profile."""
    broken = image_file("JPEG", icc_profile=b"not an ICC profile" * 20)
    response = owner.post(url(listing), {"image": broken}, format="multipart")
    assert response.status_code == 201, response.content
    stored = Image.open(ListingPhoto.objects.get(listing=listing).image.path)
    assert stored.getpixel((10, 10)) == pytest.approx(BLUE, abs=3)
    assert "icc_profile" not in stored.info


@pytest.mark.django_db(transaction=True)
def test_deleting_a_listing_nobody_ordered_removes_its_photos_files(listing, owner):
    assert (
        owner.post(url(listing), {"image": image_file("JPEG")}, format="multipart").status_code
        == 201
    )
    make_listing_photo_thumbnail(ListingPhoto.objects.get().pk)
    assert len(stored_files(listing)) == 2  # the photo and its thumbnail
    assert owner.delete(f"/api/v1/listings/{listing.pk}/").status_code == 204
    assert not Listing.objects.filter(pk=listing.pk).exists()
    assert stored_files(listing) == []
    celery_app.control.purge()  # the thumbnail's message: no worker here
