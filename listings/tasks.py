"""Background work of listings: photo thumbnails, and the sweeper that re-drives them."""

from celery import shared_task

from listings import photos
from listings.models import ListingPhoto

SWEEP_BATCH = 500


@shared_task(soft_time_limit=30, time_limit=60)
def make_listing_photo_thumbnail(photo_id: int) -> None:
    """Idempotent: a deleted photo, or one that has its thumbnail, is left alone; one whose
    image file is gone, or no longer decodes, is marked so (and logged), and the sweeper
    sends it no more."""
    photo = ListingPhoto.objects.filter(pk=photo_id).first()
    if photo is None:
        return
    try:
        photos.listing_photo_make_thumbnail(photo=photo)
    except FileNotFoundError:
        photos.listing_photo_file_gone(photo=photo)
    except photos.ImageUnreadableError as error:
        photos.listing_photo_image_unreadable(photo=photo, error=error)


@shared_task(soft_time_limit=30, time_limit=60)
def make_overdue_listing_photo_thumbnails() -> int:
    """Enqueue again the thumbnails whose task was lost (a broker outage, a purged queue)."""
    overdue = photos.photos_missing_thumbnail(older_than=photos.THUMBNAIL_OVERDUE_AFTER)
    photo_ids = list(overdue.values_list("id", flat=True)[:SWEEP_BATCH])
    for photo_id in photo_ids:
        make_listing_photo_thumbnail.delay(photo_id)
    return len(photo_ids)
