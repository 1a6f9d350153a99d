import TestSupport

// The fixtures root and temp dirs come from TestSupport; these names make them visible to every file here.
typealias Fixtures = TestSupport.Fixtures
typealias TempDir = TestSupport.TempDir
