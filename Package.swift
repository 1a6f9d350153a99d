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
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // Layer 0: C shims over system libraries.
        .target(
            name: "CTorch",
            cxxSettings: torchCxxFlags,
            linkerSettings: [
                .linkedLibrary("torch"), .linkedLibrary("torch_cpu"), .linkedLibrary("c10"),
            ]
        ),
        .target(
            name: "CNifti",
            linkerSettings: [.linkedLibrary("nifti2"), .linkedLibrary("znz"), .linkedLibrary("z")]
        ),
        .target(
            name: "COpenSSL",
            linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]
        ),

        // Layer 1: tensors and checkpoints.
        .target(name: "TorchCheckpoint"),
        .target(name: "TorchKit", dependencies: ["CTorch", "TorchCheckpoint"]),

        // Layer 2: medical volumes.
        .target(name: "Imaging", dependencies: ["CNifti"]),

        // A general HTTP/1.1 server; knows nothing of MONAI.
        .target(name: "HTTPServer", dependencies: ["COpenSSL"]),

        // Layer 3: the MONAI Label domain (apps, datastore, tasks, networks). Never imports HTTPServer.
        .target(name: "MONAILabel", dependencies: ["TorchKit", "Imaging"]),

        // Layer 4: REST endpoints mapping HTTP to the domain.
        .target(name: "MONAILabelServer", dependencies: ["MONAILabel", "HTTPServer"]),

        // Layer 5: the CLI.
        .executableTarget(
            name: "monailabel",
            dependencies: [
                "MONAILabelServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // Benchmark for scripts/bench/nifti.sh.
        .executableTarget(name: "imaging-bench", dependencies: ["Imaging", "CNifti"], path: "Sources/ImagingBench"),

        .testTarget(name: "TorchCheckpointTests", dependencies: ["TorchCheckpoint"]),
        .testTarget(name: "TorchKitTests", dependencies: ["TorchKit"]),
        .testTarget(name: "ImagingTests", dependencies: ["Imaging"]),
        .testTarget(name: "HTTPServerTests", dependencies: ["HTTPServer"]),
        .testTarget(name: "MONAILabelTests", dependencies: ["MONAILabel"]),
        .testTarget(name: "MONAILabelServerTests", dependencies: ["MONAILabelServer"]),
    ],
    swiftLanguageModes: [.v6],
    cxxLanguageStandard: .cxx17
)
