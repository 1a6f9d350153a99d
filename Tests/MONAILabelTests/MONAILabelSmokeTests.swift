import Testing
@testable import MONAILabel

@Test func moduleLoads() { #expect(Bool(true)) }
