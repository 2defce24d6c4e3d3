# syntax=docker/dockerfile:1
#
# One image for every production process: web (gunicorn, the default CMD), the one-shot
# migrate, the Celery worker and Celery beat. docker-compose.yml picks the command per service.
#
#   docker build -t marketplace .
#   docker run --rm -e SECRET_KEY=... -e DATABASE_URL=... -e REDIS_URL=... -p 8000:8000 marketplace

# --- Build stage: the pinned dependencies into a virtualenv, copied whole into the runtime.
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# requirements.lock alone first, so a code change does not reinstall the dependencies.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir -r /tmp/requirements.lock


# --- Runtime stage
FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    DJANGO_SETTINGS_MODULE=marketplace.settings.production \
    WEB_CONCURRENCY=3

# An unprivileged user to run as; the code itself stays root-owned and read-only to it.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
COPY . .

# Static files are collected into the image and served by whitenoise. Production settings
# refuse to load without a real SECRET_KEY and webhook secret, so this one command gets
# random ones, drawn for it and gone with it: no value written here (public with the code)
# could ever be taken at runtime, and none is kept in the image (no ENV). The real ones come
# from the environment. media/ (MEDIA_ROOT) and .data/ are the only places the app user may write.
RUN SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(64))')" \
        PAYMENT_WEBHOOK_SECRET="$(python -c 'import secrets; print(secrets.token_urlsafe(48))')" \
        python manage.py collectstatic --noinput \
    && mkdir -p /app/media /app/.data \
    && chown app:app /app/media /app/.data

USER app

EXPOSE 8000

# gunicorn reads its worker count from WEB_CONCURRENCY (default 3, set above; override at
# run time). Its sync worker, as the project's class (marketplace/gunicorn_workers.py): what
# gunicorn refuses itself (a request line or headers too large, a malformed request) is
# answered as the API's problem+json, not an HTML page; for threads, use ….GThread with --threads.
# The timeout is generous for a slow request, short enough to recycle a stuck worker.
# The heartbeat files go to /dev/shm, not the container's overlay filesystem.
CMD ["gunicorn", "marketplace.wsgi:application", \
     "--bind", "0.0.0.0:8000", \
     "--worker-class", "marketplace.gunicorn_workers.Sync", \
     "--timeout", "60", \
     "--graceful-timeout", "30", \
     "--keep-alive", "5", \
     "--worker-tmp-dir", "/dev/shm", \
     "--access-logfile", "-"]
