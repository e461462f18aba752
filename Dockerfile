# The topolet image: one image for the node agent (`topolet node`), the scheduler
# extender (`topolet extender`) and the CLI. Build from the repository root:
#   docker build -t ghcr.io/topolet/topolet:0.1.0 .
#
# Stage 1 builds a wheel from the package; stage 2 installs only that wheel and its
# runtime dependencies, so no compiler or source tree reaches the final image.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY topology ./topology
COPY kube ./kube
COPY cpumanager ./cpumanager
COPY deviceplugin ./deviceplugin
COPY scheduler ./scheduler
COPY bench ./bench
COPY topolet ./topolet
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.12-slim
# libudev1: pyudev's C library (GPU hot-plug events and the PCI device database).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libudev1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
# The nvidia extra adds NVML (pure Python bindings; the driver's libnvidia-ml comes from
# the host when GPUs are present).
RUN WHEEL="$(ls /wheels/topolet-*.whl)" \
    && pip install --no-cache-dir "${WHEEL}[nvidia]" \
    && rm -rf /wheels
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# No USER line: the node agent must run as root. It writes cpuset.cpus/cpuset.mems of
# other containers in the host cgroup hierarchy (root-owned files) and creates its
# sockets in kubelet's root-owned device-plugin directory. The extender and the other
# commands need no privilege: their manifests run this image as a non-root user
# (securityContext runAsUser 65532, runAsNonRoot), which needs nothing from the image.
ENTRYPOINT ["topolet"]
CMD ["--help"]
