# monailabel-swift on Debian 12. Build: docker build -t monailabel-swift .
# Run:   docker run -p 8000:8000 -v /path/to/studies:/studies monailabel-swift
FROM swift:6.1-bookworm AS build
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      libtorch-dev libnifti2-dev zlib1g-dev libssl-dev libopenblas0-openmp \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources ./Sources
COPY Tests ./Tests
RUN swift build -c release --static-swift-stdlib --product monailabel \
 && cp "$(swift build -c release --show-bin-path)/monailabel" /usr/local/bin/monailabel

FROM debian:bookworm-slim
# Runtime libraries only: libtorch's shared objects come with libtorch-dev's dependency libtorch1.13.
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      libtorch1.13 libnifti2-2 libznz3 zlib1g libssl3 libopenblas0-openmp ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/monailabel /usr/local/bin/monailabel
COPY sample-apps /opt/monailabel/sample-apps
EXPOSE 8000
VOLUME ["/studies"]
ENTRYPOINT ["monailabel", "start_server", "--app", "/opt/monailabel/sample-apps/radiology", "--studies", "/studies", "--host", "0.0.0.0", "--port", "8000"]
