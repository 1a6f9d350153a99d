import Testing
@testable import TorchCheckpoint

@Test func moduleLoads() { #expect(Bool(true)) }
