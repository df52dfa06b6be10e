# The image every STUDENT pod runs (Zero to JupyterHub, hub/k8s/values.yaml). ON PAPER: not built
# by `make test` (no registry here); tests/hub/test_k8s_images.py checks what it copies.
# It holds the course package, its Python and the students' Jupyter config, and nothing of the
# source: no solutions/, no grader/, no .git (build from the repository's root:
#   docker build -f hub/k8s/image/student.Dockerfile -t REGISTRY/convlab/student:TAG .
# student.Dockerfile.dockerignore keeps everything else out of the build context too).
FROM quay.io/jupyter/minimal-notebook:python-3.11
COPY --chown=1000:100 requirements.txt pyproject.toml /tmp/convlab/
COPY --chown=1000:100 convlab /tmp/convlab/convlab
COPY hub/jupyter/student /srv/convlab/jupyter/student
COPY hub/k8s/jupyter/student /srv/convlab/k8s/student
COPY data/README.md /srv/convlab/data/README.md
RUN pip install --no-cache-dir --no-deps -r /tmp/convlab/requirements.txt ngshare_exchange \
    && pip install --no-cache-dir --no-deps /tmp/convlab \
    && rm -rf /tmp/convlab
ENV CONVLAB_DATA_DIR=/srv/convlab/data \
    JUPYTER_CONFIG_PATH=/srv/convlab/k8s/student:/srv/convlab/jupyter/student
