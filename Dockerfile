# Production image: the same image runs web (gunicorn), worker, beat and the sandbox emulator.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Each process of a container writes its metrics here; the container's exporter adds them up.
ENV PROMETHEUS_MULTIPROC_DIR=/tmp/metrics
WORKDIR /app

COPY requirements.txt constraints.txt ./
RUN pip install -r requirements.txt -c constraints.txt

COPY . .
# collectstatic needs settings that import; the real key is supplied at run time.
RUN SECRET_KEY=build-only-not-secret-collectstatic \
    FIELD_ENCRYPTION_KEYS=YnVpbGQtb25seS1ub3Qtc2VjcmV0LWNvbGxlY3RzdGE= \
    DEBUG=0 python manage.py collectstatic --no-input -v 0 \
    && useradd --system --uid 10001 --home /app portal \
    && mkdir -p /app/var && chown -R portal /app/var

USER portal
EXPOSE 8000
CMD ["gunicorn", "portal.wsgi", "--config", "python:portal.gunicorn_conf", "--bind", "0.0.0.0:8000", "--workers", "3", "--worker-class", "gthread", "--threads", "4", "--access-logfile", "-"]
