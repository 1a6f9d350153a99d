import Testing
@testable import TorchKit

@Test func moduleLoads() { #expect(Bool(true)) }
