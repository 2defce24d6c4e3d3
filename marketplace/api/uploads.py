"""How far a multipart body (a photo upload) is read: not past the largest one taken."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadhandler import FileUploadHandler


class BodySizeLimitUploadHandler(FileUploadHandler):
    """First of FILE_UPLOAD_HANDLERS. Django limits a body's form fields
    (DATA_UPLOAD_MAX_MEMORY_SIZE), not its files: a file of any size was read whole, to a
    temporary file (and hashed first under an Idempotency-Key), before the view could check
    its size, so one upload of gigabytes filled the server's disk. A body longer than the
    largest photo taken (LISTING_PHOTO_MAX_BYTES, the only file the API takes) and the
    fields around it is refused from its Content-Length before a byte of it is read: 413
    `request_too_large`, as any body too large (marketplace.api.exceptions). Django reads no
    more than the Content-Length of any body."""

    def handle_raw_input(self, input_data, meta, content_length, boundary, encoding=None):
        largest = settings.LISTING_PHOTO_MAX_BYTES + settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if content_length > largest:
            raise RequestDataTooBig(f"A multipart body of more than {largest} bytes.")

    def receive_data_chunk(self, raw_data, start):
        return raw_data  # to the next handler, which keeps the file

    def file_complete(self, file_size):
        return None
