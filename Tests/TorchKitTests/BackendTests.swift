import Foundation
import TestSupport
import Testing
@testable import TorchKit

extension TorchKitTests {
    /// The run-time loaded libtorch backend (Sources/CTorch's loader over libmonailabel_torch.so).
    @Suite struct BackendTests {
        @Test func backend_loadsAndReportsTheLibtorchItWasBuiltFor() throws {
            try Torch.loadBackend()
            let v = Torch.version
            #expect(Torch.versionString.hasPrefix("\(v.major).\(v.minor)."))
            // scripts/test-torch2.sh says which libtorch it built the backend against.
            if let expected = ProcessInfo.processInfo.environment["MONAILABEL_EXPECT_TORCH"] {
                #expect(Torch.versionString == expected)
            }
        }

        @Test func backend_isFoundNextToTheExecutableOrAtTheEnvironmentPath() throws {
            try Torch.loadBackend()
            let path = try #require(Torch.backendPath)
            if let chosen = ProcessInfo.processInfo.environment["MONAILABEL_TORCH_BACKEND"], !chosen.isEmpty {
                #expect(path == chosen)
            } else {
                let exeDir = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
                #expect(path == exeDir.appendingPathComponent("libmonailabel_torch.so").path)
            }
        }

        /// Sources/CTorch/forwarders.h is generated from the C API header; a stale one would forward a
        /// different API than the backend implements.
        @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"), "needs python3"))
        func loaderForwarders_matchTheCAPIHeader() throws {
            let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent()
            let (status, output) = try runProcess(URL(fileURLWithPath: "/usr/bin/python3"),
                                                  [repo.appendingPathComponent("scripts/gen-torch-loader.py").path, "--check"])
            #expect(status == 0, "run scripts/gen-torch-loader.py: \(output)")
        }
    }
}

extension TorchKitTests {
    @Suite struct DeviceParsingTests {
        @Test func parsing_cpu_isAlwaysAvailable() throws {
            #expect(try Device(parsing: "cpu") == .cpu)
            #expect(Device.available.first == .cpu)
        }

        @Test(arguments: ["", "gpu", "CUDA", "cuda:", "cuda:-1", "cuda:x", "cuda:+1", "cuda:99999999999999999999", "cpu:0"])
        func parsing_malformedName_isRefusedNamingIt(name: String) {
            let error = #expect(throws: DeviceError.self) { try Device(parsing: name) }
            #expect(error?.message.contains("is not a device name") == true)
        }

        @Test func parsing_cudaBeyondTheBackendsDevices_isRefusedListingTheAvailableOnes() {
            let beyond = Torch.cudaDeviceCount
            let error = #expect(throws: DeviceError.self) { try Device(parsing: "cuda:\(beyond)") }
            #expect(error?.message.contains("is not available") == true)
            #expect(error?.message.contains("offers: cpu") == true)
        }

        @Test(.enabled(if: !Torch.cudaIsAvailable, "CPU-only backend"))
        func parsing_cuda_onCPUOnlyBackend_fallsBackToCPUAsUpstream_butAnIndexedGPUIsRefused() throws {
            #expect(try Device(parsing: "cuda") == .cpu)
            #expect(throws: DeviceError.self) { try Device(parsing: "cuda:0") }
        }

        @Test(.enabled(if: Torch.cudaIsAvailable, "needs a CUDA backend"))
        func parsing_cuda_meansTheFirstGPU() throws {
            #expect(try Device(parsing: "cuda") == .cuda(0))
        }
    }
}
