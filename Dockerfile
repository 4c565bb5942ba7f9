# One image for both processes; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml setup.cfg README.md ./
COPY core ./core
COPY webapp ./webapp
COPY jobrunner ./jobrunner
COPY cli ./cli
COPY sql ./sql
RUN pip install -e . && useradd --system --no-create-home app
USER app
EXPOSE 8000
