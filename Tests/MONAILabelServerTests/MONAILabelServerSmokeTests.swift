import Testing
@testable import MONAILabelServer

@Test func moduleLoads() { #expect(Bool(true)) }
