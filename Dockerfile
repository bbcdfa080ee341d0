# data-flow: one image for every component (see docker-compose.yml), and a `devstack`
# stage adding the demo source for local runs (never deployed).
FROM python:3.11-slim AS app

ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# Exactly the versions in uv.lock (requirements.txt is exported from it, with hashes).
COPY requirements.txt .
RUN pip install --require-hashes -r requirements.txt

COPY dataflow ./dataflow
COPY Procfile-master Procfile-worker ./

RUN useradd --create-home dataflow
USER dataflow
ENV HOME=/home/dataflow
EXPOSE 8080 5555 8100

CMD ["python", "-m", "dataflow.deploy", "master"]

# The demo source of docker-compose.yml: the app plus devstack/.
FROM app AS devstack
COPY --chown=dataflow devstack ./devstack
