# CPU image of the edgemine service. Not built in CI (no Docker engine there).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# CPU-only torch first, so the pinned versions below do not pull the multi-GB CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1

COPY pyproject.toml README.md ./
COPY edgemine ./edgemine
RUN pip install . && useradd --create-home edgemine

USER edgemine
EXPOSE 8000
# Mount the bundle (and the image roots it names) at the same paths as on the indexing host.
VOLUME ["/bundle"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v1/health')"
CMD ["edgemine", "serve", "--bundle", "/bundle", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
