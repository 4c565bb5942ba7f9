# One image for both processes; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml setup.cfg setup.py README.md ./
COPY core ./core
COPY webapp ./webapp
COPY jobrunner ./jobrunner
COPY cli ./cli
COPY sql ./sql
# A C compiler for the install alone: it builds the upload's CSV parser (webapp/upload/_fastcsv.c),
# without which uploads fall back to the pure-Python parser, at about half the speed.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install -e . \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home app
USER app
EXPOSE 8000
