# syntax=docker/dockerfile:1
# Build: docker build -t receiver:0.1.0 .
# Run:   docker run --read-only --tmpfs /tmp -v receiver-state:/var/lib/receiver -p 9095:9095 receiver:0.1.0
# Only /var/lib/receiver (the SQLite file) and /tmp (scripts' scratch space) need to be writable.
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY receiver ./receiver
RUN python -m venv /opt/receiver && /opt/receiver/bin/pip install --no-cache-dir .

FROM python:3.11.11-slim-bookworm
# tini reaps the process groups that remediation scripts leave behind when they are killed.
RUN apt-get update && apt-get install -y --no-install-recommends tini && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/receiver --create-home receiver
COPY --from=build /opt/receiver /opt/receiver
COPY rules /etc/receiver/rules
COPY playbooks /etc/receiver/playbooks
COPY receiver.yml /etc/receiver/receiver.yml
ENV PATH=/opt/receiver/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001
WORKDIR /var/lib/receiver
EXPOSE 9095
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:9095/-/healthy', timeout=2)"]
ENTRYPOINT ["tini", "--", "receiver", "serve"]
CMD ["--config", "/etc/receiver/receiver.yml", "--listen", "0.0.0.0:9095", "--store", "sqlite:////var/lib/receiver/receiver.db"]
