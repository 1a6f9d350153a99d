// A benchmark server for scripts/bench/http.sh: a small JSON route and a file download, on loopback.
// Usage: httpbench <port> <file-to-serve> [workers]
import Foundation
import HTTPServer

let args = CommandLine.arguments
guard args.count >= 3, let port = Int(args[1]) else {
    FileHandle.standardError.write(Data("usage: httpbench <port> <file> [workers]\n".utf8))
    exit(2)
}
let file = args[2]
var config = HTTPServerConfiguration(host: "127.0.0.1", port: port)
config.workerCount = args.count > 3 ? Int(args[3]) ?? 2 : 2
config.keepAliveTimeout = 120
config.headerTimeout = 5
config.queueCapacity = 4096
var router = HTTPRouter()
let json = Array(#"{"name":"bench","version":"0.1","labels":["spleen"],"ok":true}"#.utf8)
router.get("/info/") { _ in .json(json) }
router.get("/file") { _ in .file(file, downloadName: "volume.bin") }
// Uploads: the body arrives spooled to a temporary file; the multipart route parses it from there as a stream.
router.put("/upload") { req in
    var spooled = false
    if case .file = req.body { spooled = true }
    return .json(Array(#"{"bytes":\#(req.body.count),"spooled":\#(spooled)}"#.utf8))
}
router.post("/form") { req in
    let form = try req.form()
    let files = form.files.map { #"{"field":"\#($0.fieldName)","size":\#($0.size)}"# }.joined(separator: ",")
    return .json(Array(#"{"fields":\#(form.fields.count),"files":[\#(files)]}"#.utf8))
}
let server = HTTPServer(configuration: config, router: router)
do {
    try server.start()
} catch {
    FileHandle.standardError.write(Data("httpbench: \(error)\n".utf8))
    exit(1)
}
FileHandle.standardOutput.write(Data("listening \(server.port ?? 0)\n".utf8))
HTTPServer.stopOnSignals(server, gracePeriod: 2)
server.wait()
var usage = rusage()
getrusage(RUSAGE_SELF.rawValue, &usage)
FileHandle.standardOutput.write(Data("peak RSS \(usage.ru_maxrss / 1024) MB\n".utf8))
