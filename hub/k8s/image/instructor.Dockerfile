# The image INSTRUCTOR pods run: the student image plus the course's source (solutions/, grader/,
# hub/) at /srv/convlab, readable by the pod's user only. ON PAPER (see hub/README.md).
#   docker build -f hub/k8s/image/instructor.Dockerfile --build-arg STUDENT=REGISTRY/convlab/student:TAG \
#       -t REGISTRY/convlab/instructor:TAG .
ARG STUDENT
FROM ${STUDENT}
COPY --chown=1000:100 . /srv/convlab/source
USER root
RUN chmod 0700 /srv/convlab/source \
    && apt-get update && apt-get install -y --no-install-recommends bubblewrap && rm -rf /var/lib/apt/lists/*
USER 1000
ENV JUPYTER_CONFIG_PATH=/srv/convlab/source/hub/k8s/jupyter/instructor:/srv/convlab/source/hub/jupyter/instructor
