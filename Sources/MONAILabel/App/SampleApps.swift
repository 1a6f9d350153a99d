import Foundation

/// The sample apps shipped with the server (`monailabel apps`).
public enum SampleApps {
    /// Finds the `sample-apps` folder: `$MONAI_LABEL_SAMPLE_APPS`, next to the executable's install prefix
    /// (`<prefix>/share/monailabel/sample-apps`), the Docker image's `/opt/monailabel/sample-apps`, or the source
    /// checkout the executable was built in.
    public static func locate(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> URL {
        var candidates: [URL] = []
        if let e = environment["MONAI_LABEL_SAMPLE_APPS"] { candidates.append(URL(fileURLWithPath: e)) }
        let exe = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        candidates.append(dir.deletingLastPathComponent().appendingPathComponent("share/monailabel/sample-apps"))
        candidates.append(URL(fileURLWithPath: "/opt/monailabel/sample-apps"))
        for _ in 0..<6 {
            candidates.append(dir.appendingPathComponent("sample-apps"))
            dir = dir.deletingLastPathComponent()
        }
        guard let found = candidates.first(where: { FileOps.isDirectory($0.path) }) else {
            throw MONAILabelError.notFound("cannot find the sample-apps folder; set MONAI_LABEL_SAMPLE_APPS")
        }
        return found.standardizedFileURL
    }

    /// App folder names (those with an `app.json`), sorted.
    public static func list(_ root: URL) -> [String] {
        FileOps.listDirectory(root.path).filter {
            FileOps.isRegularFile(root.appendingPathComponent($0).appendingPathComponent("app.json").path)
        }.sorted()
    }

    /// Copies app `name` to `<output>/<name>` (without `logs` and `model`), refusing an existing target.
    public static func copy(_ name: String, from root: URL, to output: URL) throws -> URL {
        try StoreNames.validate(name, what: "app name")
        guard list(root).contains(name) else {
            throw MONAILabelError.notFound("unknown sample app '\(name)'; available: \(list(root).joined(separator: ", "))")
        }
        let dest = output.appendingPathComponent(name)
        guard !FileManager.default.fileExists(atPath: dest.path) else {
            throw MONAILabelError.invalid("\(dest.path) already exists")
        }
        try FileOps.makeDirectory(output)
        let src = root.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: dest, withIntermediateDirectories: true)
        for item in FileOps.listDirectory(src.path) where !["logs", "model", "__pycache__"].contains(item) {
            try FileManager.default.copyItem(at: src.appendingPathComponent(item), to: dest.appendingPathComponent(item))
        }
        return dest
    }
}
