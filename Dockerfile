# The controller image (used by `make e2e-kind`; needs Docker, which CI here does not have).
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY meshctl ./meshctl
RUN pip install --no-cache-dir . && rm -rf /src
USER 65532
ENTRYPOINT ["meshctl"]
