# monailabel-swift on Debian 12. Build: docker build -t monailabel-swift .
# Run:   docker run -p 8000:8000 -v /path/to/studies:/studies monailabel-swift
# Arguments replace the default `--conf models segmentation_spleen`, e.g. review only (no model, libtorch never
# loaded): docker run -p 8000:8000 -v /path/to/studies:/studies monailabel-swift --conf models none Pretrained weights are fetched at start-up when the container has internet; else mount them and run
# `monailabel models --import DIR --app /opt/monailabel/sample-apps/radiology`.
# The package lists are checked against scripts/install-deps.sh and the binary's libraries by DockerfileTests.
# The toolchain is the one the project is built and tested with (Swift 6.3).
FROM swift:6.3-bookworm AS build
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      libtorch-dev libnifti2-dev zlib1g-dev libssl-dev libopenblas0-openmp libdcmtk-dev libgloo-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources ./Sources
COPY Tests ./Tests
# The server binary (Swift runtime linked in) and the libtorch backend it loads from its own folder.
RUN swift build -c release --static-swift-stdlib --product monailabel \
 && swift build -c release --product monailabel_torch \
 && BIN="$(swift build -c release --show-bin-path)" \
 && cp "$BIN/monailabel" "$BIN/libmonailabel_torch.so" /usr/local/bin/

FROM debian:bookworm-slim
# Runtime libraries only: libtorch1.13 (what libtorch-dev builds against) brings its own dependencies; libdcmtk17
# is DCMTK's (DICOM SEG and the DICOMweb datastore); libjemalloc2 the model workers' allocator.
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      libtorch1.13 libnifti2-2 libznz3 zlib1g libssl3 libopenblas0-openmp libdcmtk17 libjemalloc2 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/monailabel /usr/local/bin/libmonailabel_torch.so /usr/local/bin/
COPY sample-apps /opt/monailabel/sample-apps
EXPOSE 8000
VOLUME ["/studies"]
ENTRYPOINT ["monailabel", "start_server", "--app", "/opt/monailabel/sample-apps/radiology", "--studies", "/studies", "--host", "0.0.0.0", "--port", "8000"]
CMD ["--conf", "models", "segmentation_spleen"]
