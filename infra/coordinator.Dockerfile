# The coordinator image: the API, the dashboard, aggregation. Build from the repository root:
#   docker build -f infra/coordinator.Dockerfile -t gridx-coordinator .
FROM node:22-bookworm-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci
COPY web/ ./
RUN npm run build

FROM python:3.11-slim-bookworm
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY coordinator/ coordinator/
COPY node/ node/
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu ".[coordinator]"
COPY --from=web /web/out /srv/gridx-web
ENV GRIDX_WEB_DIR=/srv/gridx-web PYTHONUNBUFFERED=1
RUN useradd --system --home /var/lib/gridx gridx && mkdir -p /var/lib/gridx && chown gridx /var/lib/gridx
USER gridx
EXPOSE 8080
CMD ["gridx", "coordinator", "start", "--host", "0.0.0.0", "--port", "8080", "--data-dir", "/var/lib/gridx"]
