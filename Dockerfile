# meltano-forge: runner and service in one image. Meltano and meltano-forge live in their
# own virtualenvs so their pins never fight. There is no git in this image, by design.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MELTANO_SEND_ANONYMOUS_USAGE_STATS=false \
    PATH=/opt/meltano-forge/bin:/opt/meltano/bin:$PATH

RUN python -m venv /opt/meltano && /opt/meltano/bin/pip install meltano

COPY pyproject.toml README.md /src/
COPY providers /src/providers
COPY client /src/client
COPY service /src/service
RUN python -m venv /opt/meltano-forge && /opt/meltano-forge/bin/pip install /src && rm -rf /src

# The product never shells out to git; make sure the image cannot either.
RUN if command -v git >/dev/null 2>&1; then echo "git must not be in this image" >&2; exit 1; fi

RUN useradd --create-home --uid 10001 meltano
USER 10001
WORKDIR /home/meltano/project

EXPOSE 8080
ENTRYPOINT ["meltano-forge"]
CMD ["--help"]
