// swift-tools-version:6.0
import PackageDescription

// Debian's libtorch-dev puts the C++ frontend headers outside the default search path.
let torchCxxFlags: [CXXSetting] = [
    .unsafeFlags(["-I/usr/include/torch/csrc/api/include", "-Wno-deprecated-declarations"]),
]

let package = Package(
    name: "monailabel-swift",
    products: [
        .executable(name: "monailabel", targets: ["monailabel"]),
        // The default libtorch backend (Debian's libtorch 1.13), loaded by CTorch at run time from the
        // executable's folder; scripts/build-torch-backend.sh builds the same sources against another libtorch.
        .library(name: "monailabel_torch", type: .dynamic, targets: ["CTorchBackend"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // Layer 0: C shims over system libraries.
        // The mlt_ C API as the Swift side links it: a loader that dlopens the backend below (no libtorch here).
        .target(name: "CTorch", linkerSettings: [.linkedLibrary("dl"), .linkedLibrary("pthread")]),
        // The mlt_ C API implemented over libtorch; only ever linked into libmonailabel_torch.so. -Bsymbolic
        // binds the backend's calls among its own mlt_ functions inside it, not to the loader's forwarders.
        .target(
            name: "CTorchBackend",
            cxxSettings: torchCxxFlags,
            linkerSettings: [
                .linkedLibrary("torch"), .linkedLibrary("torch_cpu"), .linkedLibrary("c10"),
                .unsafeFlags(["-Xlinker", "-Bsymbolic"]),
            ]
        ),
        .target(
            name: "CNifti",
            linkerSettings: [.linkedLibrary("nifti2"), .linkedLibrary("znz"), .linkedLibrary("z")]
        ),
        .target(name: "CHTTPSys"),
        // zlib's raw inflate (zip's deflate method) for ZipArchive; inflateInit2 is a macro Swift cannot call.
        .target(name: "CZlib", linkerSettings: [.linkedLibrary("z")]),
        // DCMTK (Debian libdcmtk-dev): datasets, JPEG / JPEG-LS / RLE codecs, DICOM SEG.
        .target(
            name: "CDicom",
            linkerSettings: [
                "dcmseg", "dcmfg", "dcmiod", "dcmjpeg", "dcmjpls", "dcmimage", "dcmimgle", "dcmdata", "oflog", "ofstd",
            ].map { .linkedLibrary($0) }
        ),
        // The one OpenSSL shim: server and client TLS, digests, and the JWT/scrypt primitives.
        .target(
            name: "COpenSSL",
            linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]
        ),
        // The Swift face of COpenSSL for everything but WebToken's key handling: digests (SHA-256, MD5) and
        // TLS contexts/sessions for the server and the client. Nothing outside it calls EVP_ or SSL_ directly.
        .target(name: "OpenSSLKit", dependencies: ["COpenSSL"]),
        // Foundation-free JSON string escaping shared by the HTTP responses and the domain's JSON writer.
        .target(name: "JSONEscaping"),

        // Hostile-input-safe zip extraction (stored and deflate members), e.g. MONAI bundle archives; no MONAI.
        .target(name: "ZipArchive", dependencies: ["CZlib"]),

        // Layer 1: tensors and checkpoints.
        .target(name: "TorchCheckpoint"),
        .target(name: "TorchKit", dependencies: ["CTorch", "TorchCheckpoint"]),

        // Layer 2: medical volumes.
        .target(name: "Imaging", dependencies: ["CNifti"]),
        // DICOM series, SEG and CT writing over CDicom; no networking.
        .target(name: "DICOM", dependencies: ["CDicom", "Imaging"]),

        // HTTP building blocks the server and the client share: headers, header parameters, multipart parse and
        // build, chunked coding, percent-encoding. Pure functions and state machines, no I/O, no MONAI.
        .target(name: "HTTPCore"),
        // A general HTTP/1.1 server; knows nothing of MONAI.
        .target(name: "HTTPServer", dependencies: ["HTTPCore", "JSONEscaping", "OpenSSLKit", "CHTTPSys"]),
        // Blocking client sockets with timeouts (TLS goes through OpenSSLKit).
        .target(name: "CHTTPClient"),
        // A small blocking HTTP/1.1 client (HTTPS through OpenSSLKit) and DICOMweb over it; no MONAI.
        .target(name: "HTTPClient", dependencies: ["HTTPCore", "OpenSSLKit", "CHTTPClient"]),
        // JSON Web Tokens (RS256, ES256) and JWKs over OpenSSL; no HTTP, no MONAI.
        .target(name: "WebToken", dependencies: ["COpenSSL"]),
        .target(name: "DICOMweb", dependencies: ["HTTPClient"]),

        // Benchmark server for scripts/bench/http.sh; not part of the product.
        .executableTarget(name: "httpbench", dependencies: ["HTTPServer"]),

        // Layer 3: the MONAI Label domain. Never imports HTTPServer.
        // The torch-free core: datastore, sessions, JSON, crash-safe files. Small processes (the datastore
        // crash test's child) link it without paying libtorch's start-up.
        .target(name: "MONAILabelCore", dependencies: ["JSONEscaping"]),
        // Apps, strategies, tasks and networks.
        .target(name: "MONAILabel", dependencies: ["MONAILabelCore", "TorchKit", "Imaging", "ZipArchive"]),

        // A PACS as a datastore: DICOMweb lists and transfers, DICOM conversion, a LocalDatastore cache.
        .target(name: "DICOMwebDatastore", dependencies: ["MONAILabelCore", "DICOMweb", "DICOM", "Imaging", "OpenSSLKit"]),

        // Layer 4: REST endpoints mapping HTTP to the domain.
        .target(name: "MONAILabelServer", dependencies: ["MONAILabel", "HTTPServer", "HTTPClient", "Imaging", "OpenSSLKit", "DICOMwebDatastore", "WebToken"]),

        // Layer 5: the CLI.
        .executableTarget(
            name: "monailabel",
            dependencies: [
                "MONAILabelServer",
                "DICOMwebDatastore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // Benchmark for scripts/bench/nifti.sh.
        .executableTarget(name: "imaging-bench", dependencies: ["Imaging", "CNifti"], path: "Sources/ImagingBench"),
        .executableTarget(name: "scribbles-bench", dependencies: ["MONAILabel"], path: "Sources/ScribblesBench"),
        // Benchmark for scripts/bench/seg-frames.sh (SEG reading at many frames).
        .executableTarget(name: "dicom-bench", dependencies: ["DICOM", "Imaging"], path: "Sources/DICOMBench"),

        // Helpers several test targets share (a seeded generator, running a process); Foundation only.
        .target(name: "TestSupport", dependencies: ["MONAILabelCore"], path: "Tests/TestSupport"),
        // A DICOMweb responder serving hostile series, shared by the server tests and the crash probes.
        .target(name: "PACSTestSupport", dependencies: ["HTTPServer", "DICOM", "Imaging"], path: "Tests/PACSTestSupport"),
        .testTarget(name: "TorchCheckpointTests", dependencies: ["TorchCheckpoint", "TestSupport"], resources: [.copy("Resources")]),
        .testTarget(name: "TorchKitTests", dependencies: ["TorchKit", "TestSupport"]),
        .testTarget(name: "ZipArchiveTests", dependencies: ["ZipArchive", "CZlib", "TestSupport"]),
        .testTarget(name: "ImagingTests", dependencies: ["Imaging", "TestSupport"]),
        .testTarget(name: "DICOMTests", dependencies: ["DICOM", "Imaging", "TestSupport"]),
        .testTarget(name: "HTTPServerTests", dependencies: ["HTTPServer", "HTTPCore", "TestSupport"]),
        .testTarget(name: "WebTokenTests", dependencies: ["WebToken", "COpenSSL"]),
        .testTarget(name: "HTTPClientTests", dependencies: ["HTTPClient", "DICOMweb", "HTTPServer", "TestSupport"]),
        .testTarget(name: "MONAILabelTests", dependencies: ["MONAILabel", "MONAILabelCore", "TorchCheckpoint", "Imaging", "TorchKit", "datastore-crash-child", "TestSupport"]),
        // Saves labels in a loop until killed; driven by the crash test.
        .executableTarget(name: "datastore-crash-child", dependencies: ["MONAILabelCore"], path: "Tests/CrashChild"),
        // Depends on the CLI so train tests can start `monailabel run_task` children.
        // Hostile inputs against the real binary (release when built), from outside: the daemon must survive each.
        .testTarget(name: "CrashProbeTests", dependencies: ["TestSupport", "PACSTestSupport", "monailabel", "Imaging", "TorchCheckpoint", "MONAILabelCore"]),
        .testTarget(name: "MONAILabelServerTests", dependencies: ["MONAILabelServer", "monailabel", "DICOMwebDatastore", "DICOMweb", "DICOM", "HTTPClient", "TestSupport", "PACSTestSupport", "WebToken"], exclude: ["Golden"]),
    ],
    swiftLanguageModes: [.v6],
    cxxLanguageStandard: .cxx17
)
