# The controller image (used by `make e2e-kind`; needs Docker, which CI here does not have).
# It runs as an unprivileged user (uid 65532, as the chart's runAsUser) on a read-only root
# filesystem (the chart sets readOnlyRootFilesystem and mounts an emptyDir at /tmp).
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY meshctl ./meshctl
RUN pip install --no-cache-dir . && rm -rf /src \
    && groupadd --gid 65532 meshctl \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin meshctl
# nothing is written next to the code: no .pyc files on a read-only filesystem
ENV PYTHONDONTWRITEBYTECODE=1
WORKDIR /
USER 65532:65532
ENTRYPOINT ["meshctl"]
