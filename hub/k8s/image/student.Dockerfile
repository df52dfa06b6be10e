# The image every STUDENT pod runs (Zero to JupyterHub, hub/k8s/values.yaml). ON PAPER: not built
# by `make test` (no registry here); tests/hub/test_k8s_images.py checks what it copies and
# tests/hub/test_k8s_chart.py resolves its install line.
# It holds the course package, its Python and the students' Jupyter config, and nothing of the
# source: no solutions/, no grader/, no .git (build from the repository's root:
#   docker build -f hub/k8s/image/student.Dockerfile -t REGISTRY/convlab/student:TAG .
# student.Dockerfile.dockerignore keeps everything else out of the build context too).
# A plain Python image, not a conda one: everything in it is the lock's (plus the two files in
# hub/k8s/image/), so what the test resolves is what is installed.
FROM python:3.11.14-slim-bookworm
# Zero to JupyterHub's defaults: uid 1000, fsGid 100 (Debian's group "users")
RUN useradd --create-home --uid 1000 --gid 100 --shell /bin/bash jovyan
COPY --chown=1000:100 requirements.txt pyproject.toml /tmp/convlab/
COPY --chown=1000:100 hub/k8s/image/requirements.in hub/k8s/image/overrides.txt /tmp/convlab/image/
COPY --chown=1000:100 convlab /tmp/convlab/convlab
COPY hub/jupyter/student /srv/convlab/jupyter/student
COPY hub/k8s/jupyter/student /srv/convlab/k8s/student
COPY data/README.md /srv/convlab/data/README.md
RUN pip install --no-cache-dir uv==0.13.10 \
    && uv pip install --system --no-cache --requirement /tmp/convlab/requirements.txt \
        --requirement /tmp/convlab/image/requirements.in --override /tmp/convlab/image/overrides.txt \
    && uv pip install --system --no-cache --no-deps /tmp/convlab \
    && rm -rf /tmp/convlab
USER 1000
WORKDIR /home/jovyan
ENV CONVLAB_DATA_DIR=/srv/convlab/data \
    JUPYTER_CONFIG_PATH=/srv/convlab/k8s/student:/srv/convlab/jupyter/student
CMD ["jupyterhub-singleuser"]
