"""Listing photos: the upload service, the thumbnail service and the image processing.

An upload is checked (size in bytes, then a real decode with Pillow, format, pixel count)
and re-encoded before anything is stored: the stored file is always our own JPEG, with no
EXIF (no GPS position of the farm), no comments and no colour profile, under a random name.
"""

import logging
import math
import uuid
from dataclasses import dataclass
from datetime import timedelta
from io import BytesIO
from pathlib import PurePosixPath
from typing import IO

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from listings import errors, tasks
from listings.models import Listing, ListingPhoto, ListingStatus
from listings.selectors import listing_lock
from marketplace.exceptions import DomainError

logger = logging.getLogger(__name__)

MAX_PHOTOS_PER_LISTING = 8
# Checked from the header, before any pixel is decoded: a few KB of PNG can claim to be
# 100 000 × 100 000 pixels (a decompression bomb). 40 MP is more than any phone camera.
MAX_PIXELS = 40_000_000
MAX_LONG_SIDE = 2048
THUMBNAIL_LONG_SIDE = 320
JPEG_QUALITY = 85
THUMBNAIL_JPEG_QUALITY = 80
# MPO is how Pillow names the multi-picture JPEGs that many phone cameras write.
ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP"})
# A photo still without a thumbnail after this long lost its task; the sweeper re-drives it.
THUMBNAIL_OVERDUE_AFTER = timedelta(minutes=10)

_SRGB = ImageCms.createProfile("sRGB")


@dataclass(frozen=True)
class ProcessedImage:
    content: bytes
    width: int
    height: int


def _too_large(detail: str) -> DomainError:
    return DomainError(errors.IMAGE_TOO_LARGE, detail, extra={"field": "image"})


def _invalid_image() -> DomainError:
    return DomainError(
        errors.INVALID_IMAGE, "The file is not a readable image.", extra={"field": "image"}
    )


def _check_header(file: IO[bytes]) -> None:
    """Identify the image from its header and verify its structure; no pixels decoded."""
    try:
        with Image.open(file) as probe:
            if probe.format not in ACCEPTED_FORMATS:
                raise DomainError(
                    errors.UNSUPPORTED_IMAGE_TYPE,
                    f"{probe.format} images are not accepted; send JPEG, PNG or WebP.",
                    extra={"field": "image", "format": probe.format},
                )
            width, height = probe.size
            if width * height > MAX_PIXELS:
                raise _too_large(
                    f"{width}×{height} pixels is more than {MAX_PIXELS // 1_000_000} megapixels."
                )
            probe.verify()
    except Image.DecompressionBombError:
        raise _too_large("The image has too many pixels.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise _invalid_image() from None


def _decode_smaller(image: Image.Image, long_side: int) -> None:
    """Let the JPEG decoder scale down by 1/2, 1/4 or 1/8 while decoding, never below
    long_side: a 12 MP phone photo decodes in a quarter of the time and memory."""
    scale = long_side / max(image.size)
    if scale < 1:
        image.draft(None, (math.ceil(image.width * scale), math.ceil(image.height * scale)))


# Modes an integer box reduce() averages (not palette indices nor 16-bit greys).
_REDUCIBLE = frozenset({"L", "LA", "RGB", "RGBA", "CMYK"})
# Greys of 0 to 65535, as Pillow opens a 16-bit greyscale PNG.
_SIXTEEN_BIT_GREY = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


def _to_8_bit(image: Image.Image) -> Image.Image:
    """A 16-bit grey image as 8-bit "L", its shades scaled: convert() clips every value
    above 255 to white rather than scaling, so such a PNG was stored as a white page. Its
    info (orientation, a transparent grey) goes with it, the grey scaled as well."""
    if image.mode not in _SIXTEEN_BIT_GREY:
        return image
    grey = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    grey.info = dict(image.info)
    if isinstance(transparent := grey.info.get("transparency"), int):
        grey.info["transparency"] = transparent >> 8
    return grey


def _reduce_early(image: Image.Image, long_side: int) -> Image.Image:
    """Down by a whole factor to no less than long_side, before any full-size copy (turned
    upright, converted to sRGB): a 40 MP PNG, which no JPEG decoder shrinks, took seconds
    and most of a gigabyte. The thumbnail's LANCZOS then does the last, fine step."""
    factor = max(image.size) // long_side
    if factor < 2 or image.mode not in _REDUCIBLE:
        return image
    return image.reduce(factor)  # with its info: orientation, colour profile


def _to_srgb(image: Image.Image) -> Image.Image:
    """Plain RGB in sRGB: transparency flattened onto white, a colour profile (a phone's
    Display P3, a CMYK print profile) converted rather than dropped."""
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    icc_profile = image.info.get("icc_profile")
    if icc_profile and image.mode in ("RGB", "CMYK"):
        try:
            source = ImageCms.ImageCmsProfile(BytesIO(icc_profile))
            converted = ImageCms.profileToProfile(image, source, _SRGB, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError):  # lcms refuses some with an OSError
            pass  # a broken profile: keep the pixels as they are
        else:
            if converted is not None:
                return converted
    return image.convert("RGB")


def _encode_jpeg(image: Image.Image, quality: int) -> bytes:
    image.info = {}  # Pillow carries a JPEG comment over from info; nothing of the source goes
    buffer = BytesIO()
    image.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def process_photo(upload: UploadedFile) -> ProcessedImage:
    """Check an upload and re-encode it as the JPEG we store: upright (EXIF orientation
    applied), sRGB, long side at most MAX_LONG_SIDE, no metadata at all."""
    limit = settings.LISTING_PHOTO_MAX_BYTES
    if upload.size is None or upload.size > limit:
        raise _too_large(f"The file is larger than {limit} bytes.")
    upload.seek(0)
    _check_header(upload)
    upload.seek(0)  # verify() leaves the image unusable: decode from a fresh open
    try:
        with Image.open(upload) as source:
            _decode_smaller(source, MAX_LONG_SIDE)
            image = _reduce_early(_to_8_bit(source), MAX_LONG_SIDE)
            image = ImageOps.exif_transpose(image)
            image = _to_srgb(image)
            image.thumbnail((MAX_LONG_SIDE, MAX_LONG_SIDE), Image.Resampling.LANCZOS)
    except Image.DecompressionBombError:
        raise _too_large("The image has too many pixels.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise _invalid_image() from None
    return ProcessedImage(_encode_jpeg(image, JPEG_QUALITY), image.width, image.height)


def _check_accepts_photos(listing: Listing) -> None:
    if listing.status == ListingStatus.ARCHIVED:
        raise DomainError(
            errors.LISTING_ARCHIVED, "An archived listing cannot be changed.", status_code=409
        )
    if ListingPhoto.objects.filter(listing_id=listing.pk).count() >= MAX_PHOTOS_PER_LISTING:
        raise DomainError(
            errors.TOO_MANY_PHOTOS,
            f"A listing has at most {MAX_PHOTOS_PER_LISTING} photos.",
            status_code=409,
            extra={"max": MAX_PHOTOS_PER_LISTING},
        )


@transaction.atomic
def _insert_photo(photo: ListingPhoto) -> None:
    # The listing row lock serializes uploads to one listing, so two of them can't both
    # count 7 and make 9.
    listing = listing_lock(photo.listing_id)
    _check_accepts_photos(listing)
    photo.save()
    # robust: with the broker down, the photo is saved all the same (and answered 201);
    # the overdue-thumbnails sweeper makes its thumbnail
    transaction.on_commit(lambda: tasks.make_listing_photo_thumbnail.delay(photo.pk), robust=True)


def listing_photo_add(*, listing: Listing, upload: UploadedFile) -> ListingPhoto:
    """Add a photo to a listing that isn't archived and has fewer than
    MAX_PHOTOS_PER_LISTING. The upload must be a JPEG, PNG or WebP of at most
    LISTING_PHOTO_MAX_BYTES and MAX_PIXELS; what is stored is the re-encoded JPEG. The
    thumbnail is made by a task after the commit. On any refusal nothing is stored."""
    _check_accepts_photos(listing)  # early answer, before decoding; re-checked under lock
    processed = process_photo(upload)
    # The file is written before the transaction (storage may be a network service) and
    # removed again if the row is refused.
    field = ListingPhoto._meta.get_field("image")
    name = field.generate_filename(ListingPhoto(listing=listing), f"{uuid.uuid4().hex}.jpg")
    photo = ListingPhoto(
        listing=listing,
        image=field.storage.save(name, ContentFile(processed.content)),
        width=processed.width,
        height=processed.height,
    )
    try:
        _insert_photo(photo)
    except BaseException:
        photo.image.delete(save=False)
        raise
    return photo


@transaction.atomic
def listing_photo_remove(*, listing: Listing, photo_id: int) -> None:
    """A farmer takes a photo off their listing (not an archived one: orders show what was
    bought). The row goes under the listing's lock, as an upload takes it, and the files
    once that commits; a thumbnail being made meanwhile finds the row gone and removes its
    own file. A photo not on this listing (or already removed) answers 404."""
    listing = listing_lock(listing.pk)
    if listing.status == ListingStatus.ARCHIVED:
        raise DomainError(
            errors.LISTING_ARCHIVED, "An archived listing cannot be changed.", status_code=409
        )
    photo = ListingPhoto.objects.filter(listing=listing, pk=photo_id).first()
    if photo is None:
        raise DomainError("not_found", "No such photo on this listing.", status_code=404)
    photo.delete()
    files = [field for field in (photo.image, photo.thumbnail) if field]
    transaction.on_commit(
        lambda: [field.storage.delete(field.name) for field in files], robust=True
    )


def render_thumbnail(file: IO[bytes]) -> bytes:
    with Image.open(file) as source:
        _decode_smaller(source, THUMBNAIL_LONG_SIDE)
        image = source.convert("RGB")
    image.thumbnail((THUMBNAIL_LONG_SIDE, THUMBNAIL_LONG_SIDE), Image.Resampling.LANCZOS)
    return _encode_jpeg(image, THUMBNAIL_JPEG_QUALITY)


class ImageUnreadableError(Exception):
    """The stored image file no longer decodes (cut short, overwritten on disk)."""


def listing_photo_make_thumbnail(*, photo: ListingPhoto) -> ListingPhoto:
    """Give a photo its thumbnail (long side THUMBNAIL_LONG_SIDE), once: a photo that has
    one is left alone, so a redelivered or duplicate task changes nothing. A stored file
    that no longer decodes raises ImageUnreadableError."""
    if photo.thumbnail:
        return photo
    with photo.image.open("rb") as file:
        stored = BytesIO(file.read())  # a storage error stays apart from the image's own
    try:
        content = render_thumbnail(stored)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        # Decoding bytes in memory: the file itself is spoiled, and stays so.
        raise ImageUnreadableError(str(error)) from error
    stem = PurePosixPath(photo.image.name).stem
    photo.thumbnail.save(f"{stem}-thumb.jpg", ContentFile(content), save=False)
    try:
        with transaction.atomic():
            current = ListingPhoto.objects.select_for_update().filter(pk=photo.pk).first()
            if current is None or current.thumbnail:  # deleted, or another run was first
                photo.thumbnail.delete(save=False)
                return current or photo
            ListingPhoto.objects.filter(pk=photo.pk).update(thumbnail=photo.thumbnail.name)
    except BaseException:
        photo.thumbnail.delete(save=False)
        raise
    return photo


def photos_missing_thumbnail(*, older_than: timedelta) -> QuerySet[ListingPhoto]:
    """Photos whose thumbnail task should have run long ago (for the sweeper); not those
    whose image file was found gone, which cannot get one (they would fill its batches)."""
    cutoff = timezone.now() - older_than
    return ListingPhoto.objects.filter(
        thumbnail="", thumbnail_failed_at__isnull=True, created_at__lt=cutoff
    ).order_by("id")


def listing_photo_image_unreadable(*, photo: ListingPhoto, error: Exception) -> None:
    """The photo's image file no longer decodes: as with a file gone, no thumbnail can be
    made, and the sweeper stops sending it (each try would fail the same way, and enough
    such photos would fill its batches)."""
    logger.error("photo %s has an image file that does not decode: %s", photo.pk, error)
    ListingPhoto.objects.filter(pk=photo.pk).update(thumbnail_failed_at=timezone.now())


def listing_photo_file_gone(*, photo: ListingPhoto) -> None:
    """The photo's image file is gone (removed outside the app): no thumbnail can be made,
    so the sweeper stops sending it. The API shows it without a thumbnail."""
    logger.error("photo %s has no image file to make its thumbnail from", photo.pk)
    ListingPhoto.objects.filter(pk=photo.pk).update(thumbnail_failed_at=timezone.now())
