import Foundation

extension AppDefinition {
    /// For an app that serves MONAI bundles (`"bundle_models": true` in app.json, upstream's `monaibundle`):
    /// reads every bundle `--conf models a,b` names, each a folder under `<app>/model/<name>` (where upstream
    /// keeps downloaded bundles) or a path to a bundle folder, and adds its model definition under the bundle's
    /// name. Returns the names in order. A bundle that is missing or cannot be interpreted stops the start-up
    /// with a message naming it (and the config id at fault).
    public mutating func addBundles(conf: [String: String], appDir: URL) throws -> [String] {
        let spec = conf["models"]?.trimmingCharacters(in: .whitespaces) ?? ""
        let entries = spec.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !entries.isEmpty else {
            throw MONAILabelError.invalid("--conf models is required: one or more bundle names (folders under "
                + "model/) or bundle paths, comma-separated")
        }
        var names: [String] = []
        for entry in entries {
            let isPath = entry.contains("/")
            let folder = isPath
                ? URL(fileURLWithPath: entry).standardizedFileURL
                : appDir.appendingPathComponent("model").appendingPathComponent(entry)
            let name = folder.lastPathComponent
            guard !names.contains(name) else { throw MONAILabelError.invalid("--conf models names bundle '\(name)' twice") }
            guard FileOps.isDirectory(folder.path) else {
                throw MONAILabelError.notFound("bundle '\(entry)' not found" + (isPath ? "" : " in the app's model folder")
                    + "; unpack the bundle there (or pass its path), or `monailabel models --import <bundle zip>`")
            }
            let bundle = try MONAIBundle.load(folder: folder, name: name)
            var d = bundle.definition
            // Weights by absolute path: the bundle's own models folder, wherever the bundle is.
            if let files = d["files"]?.objectValue {
                var abs = JSONObject()
                for (k, v) in files { abs[k] = .string(bundle.modelDir.appendingPathComponent(v.stringValue ?? "").path) }
                d["files"] = .object(abs)
            }
            if let v = bundle.version { d["version"] = .string(v) }
            // A train.json this server cannot run leaves the bundle serving inference, as upstream (which reads
            // train.json only when training); the reason is logged at start-up and answers POST /train/<name>.
            do {
                if let t = try MONAIBundleTrain.section(folder: folder, name: name, inference: d) { d["train"] = .object(t) }
            } catch {
                d[MONAIBundleTrain.unavailableKey] = .string((error as? MONAILabelError)?.message ?? "\(error)")
            }
            models[name] = .object(d)
            names.append(name)
        }
        return names
    }
}
